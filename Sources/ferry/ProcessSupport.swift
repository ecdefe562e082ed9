import CSystemd
@preconcurrency import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

extension Process {
    /// A stderr logger; the master prefixes each line of a child with its name.
    static func makeLogger(label: String, level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

/// Waits for signals through a DispatchSource after blocking them for the whole process, so the
/// default action never runs and no thread is interrupted.
final class SignalWaiter: @unchecked Sendable {
    private let sources: NIOLockedValueBox<[any DispatchSourceSignal]> = .init([])
    private let stream: AsyncStream<Int32>
    private let continuation: AsyncStream<Int32>.Continuation

    init(_ signals: [Int32]) {
        (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        var set = sigset_t()
        sigemptyset(&set)
        for handled in signals {
            signal(handled, SIG_DFL)  // an inherited SIG_IGN would discard it even while blocked
            sigaddset(&set, handled)
        }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let continuation = self.continuation
        var created: [any DispatchSourceSignal] = []
        for signal in signals {
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler { continuation.yield(signal) }
            source.resume()
            created.append(source)
        }
        sources.withLockedValue { $0 = created }
    }

    func next() async -> Int32 {
        for await signal in stream { return signal }
        return SIGTERM
    }
}

/// Runs async work from a synchronous command and returns its result.
/// The open-files limit: a worker holds two descriptors per proxied connection.
enum OpenFilesLimit {
    /// Raises the soft limit to the hard one, as nginx's `worker_rlimit_nofile` or systemd's
    /// `LimitNOFILE=` would (the soft default, often 1024, is far below what a proxy needs; the hard
    /// limit is the administrator's ceiling). Returns the soft limit in effect afterwards.
    @discardableResult
    static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur == rlim_t.max ? Int.max : Int(limit.rlim_cur)
    }
}

enum BlockingTask {
    static func run<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let box = NIOLockedValueBox<T?>(nil)
        let semaphore = DispatchSemaphore(value: 0)
        Task {
            let value = await body()
            box.withLockedValue { $0 = value }
            semaphore.signal()
        }
        semaphore.wait()
        return box.withLockedValue { $0! }
    }
}

/// A child of the master exits when the master is gone: PR_SET_PDEATHSIG as a backup (it fires
/// when the spawning *thread* exits), plus polling that the parent pid is unchanged.
enum ParentWatch {
    static func exitWhenParentDies() {
        guard let expected = ProcessInfo.processInfo.environment["FERRY_MASTER_PID"].flatMap(Int32.init) else { return }
        _ = ferry_set_parent_death_signal(SIGTERM)
        if getppid() != expected { exit(0) }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + 1, repeating: 1)
        timer.setEventHandler {
            if getppid() != expected { kill(getpid(), SIGTERM) }
        }
        timer.resume()
        retainedTimer = timer
    }

    nonisolated(unsafe) private static var retainedTimer: (any DispatchSourceTimer)?
}

/// What `ps`, `top` and `pgrep` show for a child of the master: `comm` "ferry" (whatever the file
/// is called, and even when it was spawned through `/proc/self/exe`) and a title in place of the
/// arguments, as nginx shows "nginx: worker process".
///
/// The title overwrites the process's original argument area (what `/proc/PID/cmdline` reads),
/// padded with NULs; it is cut to that area's size. Swift's `CommandLine.arguments` is a copy made
/// before, so nothing in the process depends on the old bytes.
enum ProcessTitle {
    static func set(_ title: String) {
        // Before the first read of either, the copies would be made from the overwritten bytes.
        _ = CommandLine.arguments
        _ = ProcessInfo.processInfo.arguments
        _ = ferry_set_process_name("ferry")
        let argv = CommandLine.unsafeArgv
        guard CommandLine.argc > 0, let first = argv[0] else { return }
        // The strings are laid out one after the other; stop where that is no longer so.
        var end = first + strlen(first) + 1
        for index in 1..<Int(CommandLine.argc) {
            guard let argument = argv[index], argument == end else { break }
            end = argument + strlen(argument) + 1
        }
        let capacity = end - first
        let bytes = Array(title.utf8.prefix(capacity - 1))
        memset(first, 0, capacity)
        for (offset, byte) in bytes.enumerated() { first[offset] = CChar(bitPattern: byte) }
    }
}

/// Drops root to the configured user and group after the sockets are adopted.
enum Privileges {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// chown of paths to `user` (and its primary group) when running as root; a no-op otherwise.
    static func giveOwnership(of paths: [String], to user: String?) {
        guard getuid() == 0, let user, let account = getpwnam(user) else { return }
        for path in paths { chown(path, account.pointee.pw_uid, account.pointee.pw_gid) }
    }

    static func drop(user: String?, group: String?) throws {
        guard getuid() == 0, let user else { return }
        guard let account = getpwnam(user) else { throw Failure(description: "no such user '\(user)'") }
        var gid = account.pointee.pw_gid
        if let group {
            guard let entry = getgrnam(group) else { throw Failure(description: "no such group '\(group)'") }
            gid = entry.pointee.gr_gid
        }
        guard setgroups(0, nil) == 0, setgid(gid) == 0, setuid(account.pointee.pw_uid) == 0 else {
            throw Failure(description: "cannot drop privileges to \(user): \(String(cString: strerror(errno)))")
        }
    }
}
