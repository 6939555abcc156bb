/* The analyzer's API contract as the fuzz targets check it: a failure returns the status it
 * recorded, says why in one non-empty line and hands back nothing; a fingerprint survives its JSON
 * form (written, read back and written again: the same text). Header-only. */
#ifndef FUZZ_CONTRACT_H
#define FUZZ_CONTRACT_H

#include "provfs/analyzer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void fuzz_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz contract violated: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    abort();
}

/* A failed call: st is what it returned, err what it recorded. */
static inline void fuzz_check_failure(pa_status st, const pa_error *err)
{
    if (st == PA_OK)
        fuzz_fail("failure check on a success", NULL);
    if (err->status != st)
        fuzz_fail("returned status differs from the recorded one", err->msg);
    size_t n = strnlen(err->msg, sizeof err->msg);
    if (n == 0 || n >= sizeof err->msg)
        fuzz_fail("failure without a message", NULL);
    if (strchr(err->msg, '\n'))
        fuzz_fail("message is not one line", err->msg);
}

/* to_json -> from_json -> to_json gives the same text; returns the text (caller frees). */
static inline char *fuzz_check_roundtrip(const pa_fingerprint *fp)
{
    char *j1 = pa_fp_to_json(fp, false);
    if (!j1)
        fuzz_fail("pa_fp_to_json failed", NULL);
    pa_error err = {0};
    pa_fingerprint *back = NULL;
    pa_status st = pa_fp_from_json(j1, strlen(j1), "roundtrip", &back, &err);
    if (st != PA_OK || !back)
        fuzz_fail("a fingerprint's own JSON does not read back", err.msg);
    char *j2 = pa_fp_to_json(back, false);
    if (!j2)
        fuzz_fail("pa_fp_to_json failed on the read-back fingerprint", NULL);
    if (strcmp(j1, j2) != 0) {
        size_t i = 0;
        while (j1[i] && j1[i] == j2[i])
            i++;
        char at[160];
        snprintf(at, sizeof at, "first difference at byte %zu: ...%.60s... vs ...%.60s...", i,
                 j1 + (i > 20 ? i - 20 : 0), j2 + (i > 20 ? i - 20 : 0));
        fuzz_fail("JSON round trip changed the fingerprint", at);
    }
    if (strcmp(pa_fp_digest(fp), pa_fp_digest(back)) != 0 ||
        pa_fp_n_tensors(fp) != pa_fp_n_tensors(back) ||
        pa_fp_n_files(fp) != pa_fp_n_files(back))
        fuzz_fail("read-back fingerprint differs", NULL);
    free(j2);
    pa_fingerprint_free(back);
    return j1;
}

/* pa_compare's result is well formed whatever the inputs. */
static inline void fuzz_check_compare(const pa_compare_result *r)
{
    if (r->verdict < PA_V_NONE || r->verdict > PA_V_IDENTICAL)
        fuzz_fail("verdict out of range", NULL);
    if (strnlen(r->reason, sizeof r->reason) >= sizeof r->reason)
        fuzz_fail("reason not terminated", NULL);
    if (!(r->score >= 0.0 && r->score <= 1.0))
        fuzz_fail("score outside [0, 1]", r->reason);
    char *j = pa_compare_to_json(r, "a", "b", false);
    if (!j)
        fuzz_fail("pa_compare_to_json failed", NULL);
    free(j);
}

#endif
