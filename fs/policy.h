/* The policy engine: policy.json in, allow/block decisions out.
 *
 * Plain module, no FUSE and no SQLite: provfs and provctl share it, and it is unit-tested
 * in-process. It never looks anything up: the caller describes a model (policy_model) from what
 * the store already knows, and policy_decide() is a pure function of that description and the
 * loaded policy, cheap enough for the open() path. Semantics, rule precedence and the store
 * tables the daemon needs: fs/POLICY.md.
 *
 * Thread-safety: a loaded policy is immutable and reference-counted (atomically). Readers take a
 * reference (policy_ref, or policy_slot_get) and may use it for as long as they hold it, while a
 * reload (SIGHUP) installs a new policy with policy_slot_set; the old one is freed when its last
 * reader drops it.
 */
#ifndef PROVFS_POLICY_H
#define PROVFS_POLICY_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct policy policy;

typedef enum policy_mode {
    POLICY_OFF,     /* no decisions are computed: everything is allowed, nothing is logged */
    POLICY_AUDIT,   /* decisions are computed and would-be blocks are logged; nothing is refused */
    POLICY_ENFORCE, /* blocks are refused (EACCES for non-admins) and logged */
} policy_mode;

typedef enum policy_require {
    POLICY_REQUIRE_NEVER,
    POLICY_REQUIRE_UNKNOWN_LINEAGE,
    POLICY_REQUIRE_ALWAYS,
} policy_require;

/* Largest policy file we read. */
#define POLICY_MAX_FILE (1u << 20)
/* At most this many patterns per list, each at most POLICY_MAX_PATTERN bytes. */
#define POLICY_MAX_PATTERNS 1024
#define POLICY_MAX_PATTERN 1024

/* ---------------------------------------------------------------- loading */

/* Reads and validates the policy file at path. Missing keys take the defaults (audit,
 * unknown-lineage, [], [], false, false); unknown keys, duplicate keys and wrong types are refused. On
 * failure returns -1 and errbuf gets one line naming the file and the key, e.g.
 * `/b/.provfs/policy.json: "mode" must be off, audit or enforce`. On success *out holds one
 * reference. */
int policy_load(const char *path, policy **out, char *errbuf, size_t errlen);
/* The same from text already in memory; label names it in messages. */
int policy_parse(const char *text, size_t len, const char *label, policy **out, char *errbuf,
                 size_t errlen);
/* The built-in defaults (used when no file is given, and by tests). NULL on allocation failure. */
policy *policy_default(void);
/* The default file's text (what policy_write_default writes). */
extern const char policy_default_text[];
/* Writes the defaults to path (mode 0644, through a temporary file in the same directory and a
 * hard link, so a reader never sees a partial file and an existing file is never replaced).
 * Returns 0 when written, 1 when path already existed (left untouched), -1 on error (errbuf). */
int policy_write_default(const char *path, char *errbuf, size_t errlen);

/* One more reference to p (returns p). */
policy *policy_ref(policy *p);
/* Drops one reference; the last one frees the policy. NULL is ignored. */
void policy_unref(policy *p);
/* The same as policy_unref: the owner's "destroy". */
void policy_free(policy *p);

/* ---------------------------------------------------------------- accessors */

policy_mode policy_get_mode(const policy *p);
policy_require policy_get_require(const policy *p);
bool policy_block_pending(const policy *p);
bool policy_allow_unsafe_pickle(const policy *p);
size_t policy_n_allow(const policy *p);
size_t policy_n_deny(const policy *p);
const char *policy_allow_pattern(const policy *p, size_t i); /* NULL when out of range */
const char *policy_deny_pattern(const policy *p, size_t i);
/* The file it was loaded from ("" for built-in defaults or parsed text). */
const char *policy_source(const policy *p);
/* A number unique to this loaded policy (increases with every load in the process): part of a
 * decision cache's key, so a reload invalidates every cached decision. */
uint64_t policy_serial(const policy *p);

const char *policy_mode_name(policy_mode mode);      /* "off", "audit", "enforce" */
const char *policy_require_name(policy_require req); /* "never", "unknown-lineage", "always" */

/* The policy as a cJSON object with exactly the six policy.json keys (so it can be written back
 * and loaded again); for /.provenance. Caller deletes. NULL on allocation failure. */
cJSON *policy_to_json(const policy *p);

/* ---------------------------------------------------------------- decisions */

typedef enum policy_status {
    POLICY_PENDING,
    POLICY_ANALYZING,
    POLICY_READY,
    POLICY_INCOMPLETE,
    POLICY_FAILED,
} policy_status;

/* "pending", "analyzing", "ready", "incomplete", "failed"; anything else (or NULL) reads as
 * POLICY_FAILED, so an unknown state is never more permissive than a failed analysis. */
policy_status policy_status_parse(const char *name);
const char *policy_status_name(policy_status status);

/* What the caller knows about one model unit. Strings are borrowed for the call only. */
typedef struct policy_model {
    policy_status status;
    /* An approval in force for the unit's *current* content digest (see policy_approval_binds).
     * While a unit is pending after a write the stored digest is the old content's: pass false. */
    bool approved;
    /* The model has a derived/identical ancestor: a parent in the store or a reference match. */
    bool has_linked_ancestor;
    /* Some ancestor in the chain (parent, its parent, ...) has an approval in force. */
    bool ancestor_approved;
    /* The parent explains too little of the model (pa_compare's unknown_origin): what is left
     * has an origin of its own, so under unknown-lineage the model needs its own approval. */
    bool unknown_origin;
    /* The model's own store path(s), mount-relative ("/ft/tiny-chat"): the path being opened, or
     * every path of the unit. */
    const char *const *paths;
    size_t n_paths;
    /* Every ancestor's store path, nearest first (NULL entries are skipped). */
    const char *const *ancestor_paths;
    size_t n_ancestor_paths;
    /* The paths the model and its ancestors were first stored at (kept through renames; NULL
     * entries skipped): deny_families matches them too, so a denied model cannot leave the rule
     * by moving its directory. allow_families does not: moving out of a path never allows. */
    const char *const *origin_paths;
    size_t n_origin_paths;
    /* Reference family names of derived/identical reference matches of the model or of any
     * ancestor (e.g. "meta--llama"). Weak, metadata-only family hints do not belong here. */
    const char *const *ref_families;
    size_t n_ref_families;
    /* The family the model's own config claims (model_type), NULL when unknown. Self-declared:
     * used in reasons only, never matched against allow/deny. */
    const char *claimed_family;
    /* Several parents: "parent PATH: REASON" of the first parent besides the main one whose own
     * decision blocks, NULL when none does (the main parent is judged as the only parent is). */
    const char *blocked_parent;
    /* The global an unsafe pickle of the unit imports ("posix.system"), NULL when none: blocked
     * whatever the approvals unless allow_unsafe_pickle is true. */
    const char *unsafe_global;
} policy_model;

#define POLICY_REASON_MAX 320

typedef struct policy_decision {
    bool allow;    /* the policy's verdict, whatever the mode */
    bool enforced; /* refuse reads: mode is enforce and allow is false */
    bool logged;   /* one events row is due when it is applied: !allow and mode != off */
    policy_mode mode;
    const char *rule; /* static: "deny_families", "allow_families", "require_approval",
                         "parents", "block_pending", "failed", "unsafe_pickle", or for allows
                         also "approval",
                         "off" */
    char reason[POLICY_REASON_MAX]; /* one line for .provenance, logs and provctl */
} policy_decision;

/* Decides for one model. Precedence (first match wins; fs/POLICY.md explains each):
 * off → unsafe_pickle → approved → deny_families → parents → failed → block_pending →
 * require_approval (unknown-lineage: approved ancestor, reference match, allow_families). */
void policy_decide(const policy *p, const policy_model *m, policy_decision *out);
/* "allow" or "block". */
const char *policy_decision_name(const policy_decision *d);
/* For the events table's decision column: "refused" (enforced), "would-refuse" (audit), NULL when
 * nothing is to be logged. */
const char *policy_event_decision(const policy_decision *d);
/* The .provenance `policy` object: decision, reason, rule, mode, enforced. Caller deletes. */
cJSON *policy_decision_to_json(const policy_decision *d);

/* Whether reads of a unit's file named name (relative to the unit directory) are refused when the
 * unit is blocked. Everything is gated except what a user needs to see why: config.json,
 * README.md, LICENSE[.txt|.md], NOTICE at the unit's top level, and .provenance. Weights, shards,
 * index, tokenizer files and remote code are gated whatever their names say. */
bool policy_file_gated(const char *name);

/* ---------------------------------------------------------------- approvals */

/* Longest approval note, in bytes. */
#define POLICY_NOTE_MAX 1024

/* Validates the value of a user.provenance.approve / revoke setxattr as a note: at most
 * POLICY_NOTE_MAX bytes, valid UTF-8, no control characters, no NUL (one trailing NUL or newline,
 * as `setfattr -v` and `echo` leave them, is dropped). On success copies it NUL-terminated into
 * note (POLICY_NOTE_MAX + 1 bytes) and returns 0; otherwise -1 and err says why (map to EINVAL). */
int policy_note_parse(const char *value, size_t len, char note[POLICY_NOTE_MAX + 1], char *err,
                      size_t errlen);

/* True when an approval recorded for approved_digest is in force for content with current_digest:
 * both are 64 lowercase hex digits and equal. An unknown digest ("" or NULL) never binds. */
bool policy_approval_binds(const char *approved_digest, const char *current_digest);

/* The user.provenance.approval value: "approved" (approval in force), "blocked" (the decision
 * blocks and is enforced), "unapproved" (a would-be block under audit), "not-required". */
const char *policy_approval_label(bool approved, const policy_decision *d);

/* The .provenance `approval` record: {"state": label, "by_uid", "at" (ISO 8601 UTC), "note"};
 * record_state is the stored state ("approved", "revoked") or NULL when there is no record (then
 * by_uid/at/note are null). Caller deletes. */
cJSON *policy_approval_to_json(const char *label, const char *record_state, uint32_t by_uid,
                               int64_t at_unix, const char *note);

/* ---------------------------------------------------------------- live reload */

/* A place holding the active policy, swapped atomically by a reload. */
typedef struct policy_slot policy_slot;

/* Takes over the caller's reference to initial (which may be NULL). NULL on allocation failure. */
policy_slot *policy_slot_create(policy *initial);
/* A new reference to the active policy (NULL when none); release it with policy_unref. */
policy *policy_slot_get(policy_slot *slot);
/* Installs p (taking over the caller's reference) and drops the slot's reference to the old
 * policy; readers holding the old one keep it alive until they release it. */
void policy_slot_set(policy_slot *slot, policy *p);
void policy_slot_destroy(policy_slot *slot);

/* Loads path and, when valid, installs it in slot. Returns 0 on success; -1 with errbuf set and
 * the old policy still active when the file is invalid (what SIGHUP wants). */
int policy_slot_reload(policy_slot *slot, const char *path, char *errbuf, size_t errlen);

#endif
