/* provctl lineage / approve / revoke / log / check: a mounted store's lineage, approvals and audit
 * log, read through the mount (xattrs and .provenance) or, for log, the database read-only. */
#ifndef PROVCTL_STORE_H
#define PROVCTL_STORE_H

/* argv holds the arguments after the command word. Exit codes as provctl: 0 success, 2 bad input
 * or error (one line on stderr naming the file and the problem), 3 policy refusal (check). */
int provctl_lineage(int argc, char **argv);
int provctl_approve(int argc, char **argv);
int provctl_revoke(int argc, char **argv);
int provctl_log(int argc, char **argv);
int provctl_check(int argc, char **argv);

#endif
