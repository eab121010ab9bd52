/* core/server/move_target.h — the receiving end of `ringmail-admin user
 * move` (listen_move): another backend ships a user's store files here.
 * The protocol is described at the top of move_target.c. */
#ifndef RINGMAIL_CORE_MOVE_TARGET_H
#define RINGMAIL_CORE_MOVE_TARGET_H

#include <stddef.h>

#include "core/server/server.h"

typedef struct move_target move_target;

/* Bind listen_move (host:port; a bare port is 127.0.0.1:port), before
 * privileges are dropped.  The secret must not be empty.  err gets a
 * sentence for the operator on failure. */
int move_target_bind(const char *spec, const char *secret, move_target **out, char *err,
                     size_t errlen);
int move_target_port(const move_target *m);
/* Serve on a thread of its own (never a worker's loop): srv's mail_root,
 * store options, trusted_networks and IMAP listen address. */
int move_target_start(move_target *m, imap_server *srv);
/* Stop the thread (a transfer in progress is dropped; it resumes on the
 * next run) and free. */
void move_target_free(move_target *m);

#endif
