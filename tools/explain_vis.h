/* `candor explain --method featuremaps | maximize` (tools/explain_vis.c). */
#ifndef CANDOR_CLI_EXPLAIN_VIS_H
#define CANDOR_CLI_EXPLAIN_VIS_H

/* Runs the command when argv selects --method featuremaps or maximize and
 * returns its exit status; returns -1 for any other method. */
int explain_vis_dispatch(int argc, char **argv);

#endif
