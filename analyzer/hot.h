/* Hot loops get an AVX2 clone chosen at load time (GCC's ifunc-based target_clones); other
 * compilers (clang for the fuzz build) compile them once for the baseline ISA. */
#ifndef PA_HOT_H
#define PA_HOT_H
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PA_CLONES
#endif
#endif
