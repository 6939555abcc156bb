/* provctl graph: the lineage forest of a store database as DOT or SVG. */
#ifndef PROVCTL_GRAPH_H
#define PROVCTL_GRAPH_H
int provctl_graph(int argc, char **argv);
#endif
