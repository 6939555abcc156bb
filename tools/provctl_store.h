/* provctl lineage / approve / revoke / log / check: a mounted store's lineage, approvals and audit
 * log, read through the mount (xattrs and .provenance) or, for log, the database read-only. */
#ifndef PROVCTL_STORE_H
#define PROVCTL_STORE_H

#include <cjson/cJSON.h>
#include <limits.h>

/* argv holds the arguments after the command word. Exit codes as provctl: 0 success, 2 bad input
 * or error (one line on stderr naming the file and the problem), 3 policy refusal (check). */
int provctl_lineage(int argc, char **argv);
int provctl_approve(int argc, char **argv);
int provctl_revoke(int argc, char **argv);
int provctl_log(int argc, char **argv);
int provctl_store(int argc, char **argv);
int provctl_check(int argc, char **argv);
/* provctl sbom (provctl_sbom.c) */
int provctl_sbom(int argc, char **argv);

/* One model of a mounted store, read through its directory's .provenance. */
typedef struct unit_view {
    char dir[PATH_MAX]; /* the directory whose .provenance describes PATH, or the model file
                         * itself when the model is one file (its entry of "units") */
    cJSON *prov;        /* its parsed .provenance */
    const char *status; /* from prov */
} unit_view;
/* Loads the unit that PATH (a model directory or a file in one) belongs to; 0, or an exit code
 * after a message on stderr. */
int unit_load(const char *path, unit_view *v);
void unit_clear(unit_view *v);
const char *str_member(const cJSON *o, const char *key);
/* The approval label from .provenance: a string, or an object with "state". */
const char *approval_label(const cJSON *prov);

#endif
