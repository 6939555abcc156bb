/* Hash while writing: the SHA-256 of a file written through the mount sequentially from offset 0
 * (cp, rsync, dd), computed as its data passes through write(), so the analyzer hashes each byte
 * once (pa_fp_options.known_sha256). Plain module, no FUSE.
 *
 * One writehash per open file. Any write that is not the next in order (a gap, an overwrite, a
 * chunk that waited too long for its predecessor) invalidates it for good, as do truncate,
 * fallocate and copy_file_range (the caller calls writehash_invalidate). Writes of one file may
 * be handled by several FUSE threads at once: each waits (briefly, after its reply was sent) until
 * the bytes before it are hashed, so the hash sees them in file order; the only lock is the file's
 * own, never held while hashing. Hashing runs after the write's reply at the lowest CPU priority
 * (nice 19, this thread only), so it uses CPU the write path leaves idle; a file whose hashing
 * falls WRITEHASH_MAX_BEHIND writes behind is given up (the analyzer hashes it later) instead of
 * slowing its writer down, and so is one whose writer goes faster than WRITEHASH_MAX_RATE over a
 * window (a local copy): hashing beside it costs it throughput whatever the priority.
 */
#ifndef PROVFS_WRITEHASH_H
#define PROVFS_WRITEHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct writehash writehash;

writehash *writehash_new(void); /* NULL when out of memory (then nothing is hashed) */
/* Announces a write before its reply is sent (the writer may close the file as soon as it has
 * the reply: writehash_finish then waits for the announced update). Every hold is followed by
 * exactly one writehash_update or writehash_unhold. */
void writehash_hold(writehash *w);
void writehash_unhold(writehash *w);
/* len bytes at off were written to the file: hash them when they come next in order. */
void writehash_update(writehash *w, uint64_t off, const void *data, size_t len);
void writehash_invalidate(writehash *w);
/* Ends and frees w: true and hex (64 hex digits) when bytes [0, size) were hashed in order. */
bool writehash_finish(writehash *w, uint64_t size, char hex[65]);

#endif
