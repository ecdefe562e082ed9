import CSystemd
public import FerryConfig

#if canImport(Glibc)
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
    import Glibc
#endif

/// The listening sockets the master owns and hands to workers.
///
/// Addresses from the config get one `SO_REUSEPORT` socket per worker slot, so each worker accepts
/// on a socket of its own (the kernel spreads connections; no two processes ever accept on one fd,
/// which trips a SwiftNIO debug assertion). A socket passed by systemd cannot be multiplied: it is
/// shared, and workers accept on it from a dedicated thread (see docs/decisions.md).
public struct ListenerSockets {
    public struct Listener {
        public var configuration: ListenerConfiguration
        /// One fd per worker slot, or a single shared fd for systemd sockets.
        public var fds: [CInt]
        public var shared: Bool
        /// The port actually bound (port 0 in the config asks the kernel).
        public var port: Int?

        public func fd(forSlot slot: Int) -> CInt { shared ? fds[0] : fds[slot % fds.count] }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public private(set) var listeners: [Listener] = []

    /// Binds or adopts every listener of `configuration` for `slots` workers. An address that
    /// something else already listens on is refused (see `ensureNobodyListens`), except those in
    /// `held`: the addresses this master listens on itself (a reload that reopens its listeners
    /// binds them again while the old sockets still serve).
    public static func open(
        _ configuration: FerryConfiguration, slots: Int, systemd: [String: CInt], held: [ListenAddress] = []
    ) throws -> ListenerSockets {
        var result = ListenerSockets()
        for listener in configuration.listeners {
            switch listener.address {
            case .systemd(let name):
                guard let fd = systemd[name] else {
                    let passed = systemd.keys.sorted().joined(separator: ", ")
                    throw Failure(
                        description:
                            "listener '\(listener.name)' wants the systemd socket '\(name)', but systemd passed "
                            + (passed.isEmpty
                                ? "none (is ferry.socket enabled, with FileDescriptorName=\(name)?)" : passed))
                }
                result.listeners.append(Listener(configuration: listener, fds: [fd], shared: true, port: nil))
            case .inet(let host, let port):
                var fds: [CInt] = []
                var boundPort = port
                if port != 0 && !held.contains(listener.address) { try ensureNobodyListens(host: host, port: port) }
                do {
                    for _ in 0..<max(1, slots) {
                        let fd = try bind(host: host, port: boundPort, backlog: listener.backlog)
                        if boundPort == 0 { boundPort = localPort(fd) }
                        fds.append(fd)
                    }
                } catch {
                    for fd in fds { close(fd) }
                    throw error
                }
                result.listeners.append(Listener(configuration: listener, fds: fds, shared: false, port: boundPort))
            }
        }
        return result
    }

    /// Adds sockets for more slots (the worker count grew on reload).
    public mutating func ensureSlots(_ slots: Int) throws {
        for index in listeners.indices where !listeners[index].shared {
            guard case .inet(let host, _) = listeners[index].configuration.address, let port = listeners[index].port
            else {
                continue
            }
            while listeners[index].fds.count < slots {
                listeners[index].fds.append(
                    try Self.bind(host: host, port: port, backlog: listeners[index].configuration.backlog))
            }
        }
    }

    /// Closes the sockets of slots `slots` and above (the worker count shrank on reload).
    public mutating func closeSlots(from slots: Int) {
        let kept = max(1, slots)
        for index in listeners.indices where !listeners[index].shared && listeners[index].fds.count > kept {
            for fd in listeners[index].fds[kept...] { close(fd) }
            listeners[index].fds.removeSubrange(kept...)
        }
    }

    public func closeAll() {
        for listener in listeners where !listener.shared {
            for fd in listener.fds { close(fd) }
        }
    }

    /// Fails when a socket already listens on `host:port`. The per-slot sockets share their port
    /// through `SO_REUSEPORT`, which also lets any other process of the same user that sets it (a
    /// second `ferry serve` started by mistake, with another config) bind the same address without
    /// an error and silently take a share of the connections. A socket without `SO_REUSEPORT`
    /// cannot join a listening group, so binding one first tells whether the address is taken.
    static func ensureNobodyListens(host: String, port: Int) throws {
        let fd = try socket(host: host, reusePort: false)
        defer { close(fd) }
        guard bindAddress(fd, host: host, port: port) == 0 else {
            let reason =
                errno == EADDRINUSE
                ? "something else already listens there (another ferry?)" : String(cString: strerror(errno))
            throw Failure(description: "cannot listen on \(display(host)):\(port): \(reason)")
        }
    }

    private static func display(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }

    private static func socket(host: String, reusePort: Bool) throws -> CInt {
        let isV6 = host.contains(":")
        let fd = Glibc.socket(
            isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var one: CInt = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<CInt>.size)) }
        if isV6 { setsockopt(fd, CInt(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<CInt>.size)) }
        return fd
    }

    static func bind(host: String, port: Int, backlog: Int) throws -> CInt {
        let fd = try socket(host: host, reusePort: true)
        guard bindAddress(fd, host: host, port: port) == 0, listen(fd, CInt(backlog)) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot listen on \(display(host)):\(port): \(reason)")
        }
        return fd
    }

    /// `bind(2)` of `fd` to `host:port`; 0 or -1 with `errno` set.
    private static func bindAddress(_ fd: CInt, host: String, port: Int) -> CInt {
        var result: CInt
        if host.contains(":") {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = UInt16(port).bigEndian
            inet_pton(AF_INET6, host, &address.sin6_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            inet_pton(AF_INET, host, &address.sin_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        return result
    }

    static func localPort(_ fd: CInt) -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }
}

/// Socket activation: the fds systemd passed, by `FileDescriptorName`.
public enum SystemdSockets {
    public static func take() -> [String: CInt] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [:] }
        var result: [String: CInt] = [:]
        for index in 0..<Int(count) {
            let fd = SD_LISTEN_FDS_START + CInt(index)
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            result[name] = fd
            free(names?[index])
        }
        free(names)
        return result
    }
}

/// `sd_notify` messages; a no-op outside systemd.
public enum SystemdNotifier {
    public static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// The watchdog interval systemd asked for, if any.
    public static func watchdogInterval() -> Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds))
    }

    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}
