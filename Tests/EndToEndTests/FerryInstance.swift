import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A running `ferry serve` on loopback, in its own temporary directory, for end-to-end tests.
///
/// Ports are picked free by binding port 0 and releasing it; the small race with other tests is
/// accepted (each test uses its own ports and the suite runs with two workers).
final class FerryInstance: @unchecked Sendable {
    let directory: URL
    let configPath: String
    let httpsPort: Int
    let process: Process
    private let logHandle: FileHandle
    let logPath: String

    var stateDirectory: String { directory.appendingPathComponent("state").path }
    var controlSocket: String { directory.appendingPathComponent("state/control.sock").path }
    var certificatePath: String { directory.appendingPathComponent("state/tls/selfsigned.crt").path }

    /// Starts Ferry with a config rendered by `config` (given the directory and the HTTPS port) and
    /// waits until the HTTPS port accepts connections.
    init(
        name: String,
        config: (_ directory: URL, _ httpsPort: Int) -> String,
        environment: [String: String] = [:],
        launcher: [String] = [],
        socketActivated: Bool = false,
        timeout: TimeInterval = 30
    ) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-e2e-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        httpsPort = try FreePort.pick()
        configPath = directory.appendingPathComponent("ferry.toml").path
        try config(directory, httpsPort).write(toFile: configPath, atomically: true, encoding: .utf8)
        logPath = directory.appendingPathComponent("ferry.log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process = Process()
        // `launcher` runs Ferry through another program (e.g. `prlimit --nofile=N:N --`).
        var launcher = launcher
        if socketActivated {
            // As systemd would: the socket is bound by systemd-socket-activate, which starts Ferry
            // (same pid, LISTEN_FDS=1, FileDescriptorName=https) on the first connection.
            guard let activate = Tool.path("systemd-socket-activate") else {
                throw E2EError("systemd-socket-activate is not installed")
            }
            // Through a small Python parent that forwards HUP/TERM/INT. Foundation's Process learns
            // that a child exited when a socket the child inherited reaches EOF, and
            // systemd-socket-activate closes every inherited descriptor before it execs: with Ferry
            // as the direct child, Foundation blocks in waitpid on a live Ferry and never reaps
            // another process (the test hangs). Python, not sh: children of the test inherit its
            // threads' blocked signals, and only Python can unblock them to forward.
            guard let python = Tool.path("python3") else { throw E2EError("python3 is not installed") }
            let forwarding = """
                import signal, subprocess, sys
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                child = subprocess.Popen(sys.argv[1:])
                for number in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    signal.signal(number, lambda received, frame: child.send_signal(received))
                sys.exit(child.wait())
                """
            launcher =
                [
                    python, "-c", forwarding, activate, "-l", "127.0.0.1:\(httpsPort)", "--fdname=https", "-E", "PATH",
                    "-E", "HOME",
                ] + launcher
        }
        if let first = launcher.first {
            process.executableURL = URL(fileURLWithPath: first)
            process.arguments = Array(launcher.dropFirst()) + [FerryBinary.url.path, "serve", "--config", configPath]
        } else {
            process.executableURL = FerryBinary.url
            process.arguments = ["serve", "--config", configPath]
        }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "LISTEN_FDS")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = logHandle
        process.standardError = logHandle
        try process.run()
        try waitUntilAccepting(port: httpsPort, timeout: timeout)
    }

    /// The `[master]` and `[[listen]]` part of a test configuration: state in `directory`, TLS with
    /// the generated self-signed certificate on 127.0.0.1:`port`.
    static func preamble(_ directory: URL, port: Int, workers: Int) -> String {
        let state = directory.appendingPathComponent("state").path
        return """
            [master]
            workers = \(workers)
            control_socket = "\(state)/control.sock"
            state_dir = "\(state)"
            graceful_timeout = "2s"

            [[listen]]
            name = "https"
            address = "127.0.0.1:\(port)"
            [listen.tls]
            certificate = "\(state)/tls/selfsigned.crt"
            key = "\(state)/tls/selfsigned.key"
            self_signed = true

            """
    }

    func waitUntilAccepting(port: Int, timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning {
                throw E2EError("ferry exited with \(process.terminationStatus) before listening:\n\(log())")
            }
            if FreePort.accepts(port: port) { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw E2EError("ferry did not listen on \(port) within \(timeout)s:\n\(log())")
    }

    func log() -> String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// SIGTERM, then wait (bounded); SIGKILL if it does not stop.
    func stop(timeout: TimeInterval = 20) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? logHandle.close()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

struct E2EError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum FreePort {
    /// Ports this test process handed out already: the kernel may give a port released by one
    /// `pick` to the next one (two backends of one test once got the same port).
    private static let handedOut = NSLock()
    nonisolated(unsafe) private static var taken: Set<Int> = []

    static func pick() throws -> Int {
        for _ in 0..<50 {
            let port = try pickOnce()
            let fresh = handedOut.withLock { taken.insert(port).inserted }
            if fresh { return port }
        }
        throw E2EError("no fresh free port")
    }

    private static func pickOnce() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw E2EError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw E2EError("bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A first port of `count` consecutive free ones (for `instances = N`, which count up).
    static func pickRange(_ count: Int) throws -> Int {
        for _ in 0..<50 {
            let first = try pick()
            guard first + count <= 65535 else { continue }
            if (1..<count).allSatisfy({ !accepts(port: first + $0) && isBindable(first + $0) }) { return first }
        }
        throw E2EError("no \(count) consecutive free ports")
    }

    static func isBindable(_ port: Int) -> Bool {
        onLoopback(port) { fd, address, length in bind(fd, address, length) == 0 }
    }

    static func accepts(port: Int) -> Bool {
        onLoopback(port) { fd, address, length in connect(fd, address, length) == 0 }
    }

    /// `body` with a new TCP socket and the address of 127.0.0.1:`port`; false without a socket.
    private static func onLoopback(
        _ port: Int, _ body: (CInt, UnsafePointer<sockaddr>, socklen_t) -> Bool
    ) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}

/// Runs an external tool; nil when it is not installed (the caller skips with a reason).
enum Tool {
    static func path(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Whether python3 with the `websockets` client library is here; says "skipped" when not.
    static func pythonWebSocketsAvailable() -> Bool {
        guard path("python3") != nil, pythonHas("websockets") else {
            print("skipped: python3 with websockets is not installed")
            return false
        }
        return true
    }

    /// Starts a Python server script on a free port (given as `arguments(port)`), its output
    /// discarded, and waits (bounded) until the port accepts connections.
    static func startPythonServer(
        _ script: String, arguments: (Int) -> [String], timeout: TimeInterval = 15
    ) throws -> (port: Int, process: Process) {
        guard let python = path("python3") else { throw E2EError("python3 is not installed") }
        let port = try FreePort.pick()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script] + arguments(port)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while !FreePort.accepts(port: port) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return (port, process)
    }

    static func pythonHas(_ module: String) -> Bool {
        guard let python = path("python3") else { return false }
        return (try? run(python, ["-c", "import \(module)"]).status) == 0
    }

    static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 60) throws
        -> FerryBinary.Output
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        timer.cancel()
        return .init(
            status: process.terminationStatus,
            stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}
