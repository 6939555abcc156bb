/* JSON and file helpers shared by the analyzer's parsers (private). */
#ifndef PA_JSONUTIL_H
#define PA_JSONUTIL_H
#include "provfs/analyzer.h"
#include <cjson/cJSON.h>

/* Largest JSON file we accept (config.json, tokenizer.json, index, fingerprints). */
#define PA_JSON_MAX_FILE (256u * 1024u * 1024u)

/* Read a whole regular file (at most limit bytes, else PA_E_LIMIT). The buffer is NUL terminated. */
pa_status pa_read_file(const char *path, size_t limit, char **out, size_t *len, pa_error *err);
/* The same from an open fd (read with pread from offset 0); path names the file in errors. */
pa_status pa_read_fd(int fd, const char *path, size_t limit, char **out, size_t *len,
                     pa_error *err);
/* Size of the regular file open at fd: PA_E_IO when it cannot be stat'ed, PA_E_FORMAT when it is
 * not a regular file (the one preamble of every header reader). */
pa_status pa_regular_size(int fd, const char *label, uint64_t *size, pa_error *err);
/* pread exactly len bytes at off: 0 on success, -1 with errno on error, 1 when the file ended
 * first. */
int pa_pread_exact(int fd, void *dst, size_t len, uint64_t off);
/* Parse JSON text with cJSON (bounded nesting); on failure the error names label and the byte
 * offset. */
cJSON *pa_json_parse(const char *text, size_t len, const char *label, pa_error *err);
/* Serialise like Python's json.dumps(v, sort_keys=sort_keys): ", " and ": " separators,
 * non-ASCII as \uXXXX (surrogate pairs above the BMP), integers without a fraction, other numbers
 * in shortest round-trip form. Caller frees. NULL on allocation failure. */
char *pa_json_pydumps(const cJSON *v, bool sort_keys);
/* Allocation failures while building JSON: cJSON's allocations go through hooks that note a
 * failure in a per-thread flag, and writers note their own. A writer resets the flag, builds its
 * tree, and returns NULL when it is set — a document with a silently missing member is worse than
 * no document. */
void pa_json_fail_reset(void);
void pa_json_fail_note(void);
bool pa_json_failed(void);
/* cJSON_AddItemToObject that frees item when it cannot be attached (the key copy failed):
 * cJSON's own call leaks it then. false on failure or a NULL item. */
bool pa_json_add(cJSON *obj, const char *key, cJSON *item);
/* Integer value of an object member: true when present, a number, and integral. */
bool pa_json_int(const cJSON *obj, const char *key, int64_t *out);
/* String member or NULL. */
const char *pa_json_str(const cJSON *obj, const char *key);
#endif
