#ifndef FERRY_CSYSTEMD_SHIM_H
#define FERRY_CSYSTEMD_SHIM_H


// libsystemd (sd_notify, socket activation) plus the few process-control macros and
// GNU extensions Swift cannot call directly.
#include <systemd/sd-daemon.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>
#include <fcntl.h>

static inline int ferry_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal); }

/* The thread's (and, from the main thread, the process's) `comm`, as ps -C and pgrep match it. */
static inline int ferry_set_process_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

static inline int ferry_WIFEXITED(int status) { return WIFEXITED(status); }
static inline int ferry_WEXITSTATUS(int status) { return WEXITSTATUS(status); }
static inline int ferry_WIFSIGNALED(int status) { return WIFSIGNALED(status); }
static inline int ferry_WTERMSIG(int status) { return WTERMSIG(status); }

/* Closes every descriptor >= low in the child (glibc 2.34+). */
static inline int ferry_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int low) {
    return posix_spawn_file_actions_addclosefrom_np(actions, low);
}

/* GNU extensions declared only with _GNU_SOURCE, which a module header cannot define. */
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *actions, const char *path);
extern int pipe2(int fds[2], int flags);

static inline int ferry_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

static inline int ferry_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

/* The uid of the peer of a connected Unix socket, or -1. */
static inline long ferry_peer_uid(int fd) {
    struct { pid_t pid; uid_t uid; gid_t gid; } cred; /* struct ucred, which needs _GNU_SOURCE */
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    return (long)cred.uid;
}

static inline long ferry_peer_gid(int fd) {
    struct { pid_t pid; uid_t uid; gid_t gid; } cred; /* struct ucred, which needs _GNU_SOURCE */
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    return (long)cred.gid;
}

#endif
