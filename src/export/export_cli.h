/* export_cli.h: the `tollgate export` command (export_cli.c). */
#ifndef TOLLGATE_EXPORT_CLI_H
#define TOLLGATE_EXPORT_CLI_H

/* argv[0] is "export". Returns the exit status: 0 sent, 1 failed, 2 usage. */
int export_main(int argc, char **argv);

#endif
