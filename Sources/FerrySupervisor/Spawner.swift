import CSystemd

#if canImport(Glibc)
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
    import Glibc
#endif

/// `posix_spawn` of a child with chosen descriptors at fixed numbers (never `fork` without `exec`
/// in a Swift process). Children start with an empty signal mask and default dispositions, and
/// inherit no other descriptor of the master.
enum Spawner {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// - Parameters:
    ///   - descriptors: (master fd, child fd) pairs dup'ed into the child; everything above the
    ///     highest child fd is closed.
    ///   - stdout/stderr: fds for the child's standard output and error (nil: inherit the master's).
    static func spawn(
        executable: String, arguments: [String], environment: [String: String], descriptors: [(CInt, CInt)],
        workingDirectory: String? = nil, output: CInt? = nil, searchPath: Bool = false, displayName: String? = nil
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let output {
            posix_spawn_file_actions_adddup2(&actions, output, 1)
            posix_spawn_file_actions_adddup2(&actions, output, 2)
        }
        // dup2 onto the target numbers. A source that sits on another mapping's target would be
        // clobbered, so every source is first duplicated above the children's range (just above
        // it: a fixed high number fails under a low RLIMIT_NOFILE, found with `prlimit --nofile=160`).
        var highest: CInt = 2
        var temporaries: [CInt] = []
        defer { for fd in temporaries { close(fd) } }
        let aboveTargets = (descriptors.map { $0.1 }.max() ?? 2) + 1
        for (source, target) in descriptors {
            let high = fcntl(source, F_DUPFD_CLOEXEC, aboveTargets)
            guard high >= 0 else { throw Failure(description: "fcntl(F_DUPFD): \(String(cString: strerror(errno)))") }
            temporaries.append(high)
            posix_spawn_file_actions_adddup2(&actions, high, target)
            highest = max(highest, target)
        }
        ferry_spawn_addclosefrom(&actions, highest + 1)
        if let workingDirectory { ferry_spawn_addchdir(&actions, workingDirectory) }

        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([displayName ?? executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result =
            searchPath
            ? posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
            : posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw Failure(description: "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// How a reaped child ended.
    enum Exit: Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        init(status: CInt) {
            if ferry_WIFSIGNALED(status) != 0 {
                self = .signaled(ferry_WTERMSIG(status))
            } else {
                self = .exited(ferry_WEXITSTATUS(status))
            }
        }

        var description: String {
            switch self {
            case .exited(let code): "exit code \(code)"
            case .signaled(let signal): "signal \(signal)"
            }
        }
    }

    /// Every child that has exited since the last call (`waitpid(-1, WNOHANG)` until none is left).
    static func reap() -> [(pid_t, Exit)] {
        var exited: [(pid_t, Exit)] = []
        while true {
            var status: CInt = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { break }
            exited.append((pid, Exit(status: status)))
        }
        return exited
    }

    /// A socketpair for a child's control channel: (master end, child end), both CLOEXEC.
    static func socketPair() throws -> (CInt, CInt) {
        var fds: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw Failure(description: "socketpair: \(String(cString: strerror(errno)))")
        }
        return (fds[0], fds[1])
    }

    /// The real path of the running executable, so `ps` shows `/usr/local/bin/ferry worker` rather
    /// than `/proc/self/exe worker`.
    static let selfPath: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return "ferry" }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// What children are spawned from: the executable's real path, so their `comm` is its name
    /// ("ferry") and `pgrep ferry` finds them, not "exe"; but `/proc/self/exe` when that path no
    /// longer holds this very binary (replaced by a package upgrade, or deleted), so a master never
    /// starts workers of another version than its own. Workers set `comm` themselves as well.
    static var executablePath: String {
        var running = stat()
        var onDisk = stat()
        guard stat("/proc/self/exe", &running) == 0, stat(selfPath, &onDisk) == 0,
            running.st_dev == onDisk.st_dev, running.st_ino == onDisk.st_ino
        else { return "/proc/self/exe" }
        return selfPath
    }

    /// A pipe for a child's output: (read end, write end), both CLOEXEC.
    static func pipe() throws -> (CInt, CInt) {
        var fds: [CInt] = [0, 0]
        guard ferry_pipe_cloexec(&fds) == 0 else {
            throw Failure(description: "pipe: \(String(cString: strerror(errno)))")
        }
        return (fds[0], fds[1])
    }
}
