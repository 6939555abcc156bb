/* The policy applied to the store: describes a unit from what the store and the queue know,
 * asks policy_decide(), and caches the answer. Plain module, no FUSE (the FUSE callbacks supply
 * the caller's identity); xattr.c, vfile.c and the open() wrapper in file.c all decide through it,
 * so the label, the `.provenance` decision and the refusal can never disagree.
 *
 * Decisions are computed from stored data only (never analysis) and cached per unit path, keyed
 * by (store_generation, policy_serial, queue state): an approval, a new analysis, a rename or a
 * policy reload changes the key, so no explicit invalidation is needed. Thread-safe; the cache
 * lock (gate.lock) is a leaf, never held across a store or queue call.
 */
#ifndef PROVFS_GATE_H
#define PROVFS_GATE_H

#include "policy.h"
#include "queue.h"
#include "store.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct gate gate;

/* slot: the active policy (reloaded on SIGHUP by main); the gate does not own it. */
gate *gate_create(store_handle *st, queue *q, policy_slot *slot);
void gate_destroy(gate *g);
/* True when the active policy's mode is off (nothing to check on open). */
bool gate_off(gate *g);
/* A new reference to the active policy (release with policy_unref); NULL when none. */
policy *gate_policy(gate *g);

/* The policy's verdict on one unit. */
typedef struct gate_verdict {
    bool unit;        /* the path is a model unit (stored or queued) */
    bool approved;    /* an approval is in force for the unit's current digest */
    int64_t model_id; /* 0 while unknown */
    bool unknown_origin; /* the parent explains too little of it: unknown lineage */
    policy_decision decision;
} gate_verdict;

/* Decides for the unit at dir (mount-relative, "/a/b"; a GGUF file unit's own path). 0 with out
 * filled (out->unit false when dir is not a unit), -1 on a store error. */
int gate_unit(gate *g, const char *dir, gate_verdict *out);

/* What an open() for reading of path (a file, mount-relative) must do, before the caller's
 * identity is known. */
typedef struct gate_open {
    bool applies;     /* a gated file of a blocked unit: refuse (enforced) or log for non-admins */
    bool cacheable;   /* !applies, decided while gate_settled(path): reusable under the stamp */
    bool enforced;    /* refuse with EACCES */
    int64_t model_id;
    const char *rule; /* static */
    const char *decision; /* "refused" / "would-refuse" */
    char reason[320];
    /* The file on fd is not the one the analysis of a settled enclosing unit read (its size,
     * mtime, ctime or inode differ: written through another hard link, or in BACKING): the
     * caller marks stale_unit (a file unit or a directory unit) and asks again. Nothing else
     * is filled then. */
    bool stale;
    char stale_unit[PATH_MAX];
} gate_open;

/* What a cached "nothing to do" answer for one path depends on besides the queue: the store's
 * generation and the policy's serial. A caller (file.c caches per inode, to skip resolving the
 * path) may reuse an answer while the stamp is equal and gate_settled(path) holds. */
typedef struct gate_stamp {
    uint64_t generation, serial;
    bool off; /* the policy's mode is off (or there is none): nothing to check */
} gate_stamp;
gate_stamp gate_current_stamp(gate *g);
/* True when neither path nor any directory above it is pending or analysing. */
bool gate_settled(gate *g, const char *path);

/* Fills out for an open of path for reading; fd is the file open for reading (its first bytes
 * decide whether a documentation name is really exempt), -1 when its bytes are unknown (they then
 * count as a model's). Cheap on a cache hit (no store access). 0, or -1 on a store error
 * (out->applies false: the read is not refused for a store error). */
int gate_check_open(gate *g, const char *path, int fd, gate_open *out);
/* Fills out for an open of a file whose path cannot be resolved (deleted name, a path longer than
 * PATH_MAX): fails closed (rule "unresolved-path") when its bytes are a model's and a policy is
 * active. */
int gate_check_unresolved(gate *g, int fd, gate_open *out);
/* Writes the events row of a refusal or would-be refusal (path, uid, pid of the caller). */
/* Records a refusal (or an audit mode's would-refuse) in the events table and, once per
 * (uid, unit, rule, decision) and minute, as one syslog line naming the fix. */
void gate_log_open(gate *g, const gate_open *o, const char *path, uint32_t uid, int32_t pid);
/* The mount point, so syslog lines carry paths users can type. */
void gate_set_mountpoint(gate *g, const char *mountpoint);

/* Number of stored unit paths whose decision is block (for /.provenance). */
int64_t gate_count_blocked(gate *g);

#endif
