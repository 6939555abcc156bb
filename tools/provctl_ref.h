/* provctl scan and provctl refdb: reference sets and "which known base is this?" */
#ifndef PROVCTL_REF_H
#define PROVCTL_REF_H

/* argv holds the arguments after the command word. Exit codes as provctl: 0, 2 on error. */
int provctl_scan(int argc, char **argv);
int provctl_refdb(int argc, char **argv);

#endif
