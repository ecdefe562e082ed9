import FerryConfig
import FerryProxy
import Foundation
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// A Python backend from Fixtures/, on a free loopback port, killed at deinit.
final class PythonBackend: @unchecked Sendable {
    let process = Process()
    let port: Int

    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/env")
            && (try? shell("/usr/bin/env", ["python3", "-c", "import tornado, websockets"]).status) == 0
    }

    init(script: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", fixtures.appendingPathComponent(script).path] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        try process.run()
        var line = Data()
        let handle = out.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let portText = text.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines),
            let port = Int(portText)
        else {
            process.terminate()
            throw TestFailure("backend \(script) did not start: \(text)")
        }
        self.port = port
    }

    deinit {
        // SIGKILL: the test runner's threads may block SIGTERM, and children inherit the mask.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A directory of random "audio" files, as the seed's results directory.
final class FilesFixture: @unchecked Sendable {
    let directory: URL

    init(count: Int = 8) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-files-\(UUID().uuidString)")
        for format in ["wav", "mp3"] {
            let dir = directory.appendingPathComponent(format)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for index in 0..<count {
                var bytes = [UInt8](repeating: 0, count: 2048 + index * 997)
                for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
                try Data(bytes).write(to: dir.appendingPathComponent("file\(index).\(format)"))
            }
        }
    }

    deinit { try? FileManager.default.removeItem(at: directory) }
}

/// A `ProxyServer` on 127.0.0.1:0 with the given routes to one backend.
final class ProxyHarness: @unchecked Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let server: ProxyServer
    let port: Int

    init(
        backendPort: Int, backendAddress: BackendAddress? = nil, routes: [RouteConfiguration],
        limits: LimitSettings = LimitSettings(),
        pool: PoolSettings = PoolSettings(), reuseMode: ProxyServer.ReuseMode = .strict,
        listenHost: String = "127.0.0.1", backend: BackendConfiguration? = nil,
        proxyProtocolFrom: [CIDRBlock]? = nil
    ) async throws {
        var master = MasterSettings()
        master.accessLog = .off
        let configuration = FerryConfiguration(
            master: master,
            listeners: [Self.listener(host: listenHost, proxyProtocolFrom: proxyProtocolFrom)],
            backends: [
                backend
                    ?? BackendConfiguration(
                        name: "app", address: backendAddress ?? .inet(host: "127.0.0.1", port: backendPort),
                        // Short: a refused backend is retried for this long before its 503.
                        queueTimeout: .milliseconds(300))
            ],
            routes: routes, pool: pool, limits: limits)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        server = ProxyServer(configuration: configuration, group: group, logger: logger, reuseMode: reuseMode)
        let addresses = try await server.start(listeners: [
            ProxyListener(configuration: configuration.listeners[0], socket: .bind(host: listenHost, port: 0))
        ])
        port = addresses.first?.port ?? 0
    }

    static func listener(host: String, proxyProtocolFrom: [CIDRBlock]?) -> ListenerConfiguration {
        var listener = ListenerConfiguration(name: "http", address: .inet(host: host, port: 0))
        if let proxyProtocolFrom {
            listener.proxyProtocol = true
            listener.proxyProtocolFrom = proxyProtocolFrom
            listener.proxyProtocolTimeout = .milliseconds(300)
        }
        return listener
    }

    func stop() async {
        await server.shutdown()
        try? await group.shutdownGracefully()
    }
}

/// A proxy with every path routed to `framing_backend.py` (skipped without python3).
/// `proxyProtocolFrom`: the listener takes PROXY protocol headers from these sources.
func withFramingBackendProxy(
    proxyProtocolFrom: [CIDRBlock]? = nil, _ body: (ProxyHarness) async throws -> Void
) async throws {
    guard PythonBackend.available else { return }
    let backend = try PythonBackend(script: "framing_backend.py", arguments: [])
    let proxy = try await ProxyHarness(
        backendPort: backend.port, routes: [route("/", strip: nil)], proxyProtocolFrom: proxyProtocolFrom)
    do {
        try await body(proxy)
    } catch {
        await proxy.stop()
        throw error
    }
    await proxy.stop()
}

/// A blocking raw HTTP exchange: sends bytes, reads until the peer closes or `timeout` passes.
/// `then` sends more on the same connection once what was received contains the given text.
func rawExchange(
    port: Int, _ request: String, timeout: Double = 3, readUntilClose: Bool = true,
    then followUp: (after: String, send: String)? = nil, ipv6: Bool = false
) throws -> String {
    try rawConversation(
        port: port, request, timeout: timeout, readUntilClose: readUntilClose, then: followUp, ipv6: ipv6
    ).received
}

/// When the client of `rawConversation` shuts down its sending side (TCP FIN, what a client that
/// closes its socket sends).
enum HalfClose {
    /// Right after the request is sent.
    case afterSending
    /// Once what was received contains this text.
    case after(String)
}

/// `rawExchange`, and whether the peer closed the connection (rather than `timeout` passing).
func rawConversation(
    port: Int, _ request: String, timeout: Double = 3, readUntilClose: Bool = true,
    then followUp: (after: String, send: String)? = nil, ipv6: Bool = false, halfClose: HalfClose? = nil,
    rawBytes: [UInt8]? = nil, onReceive: ((String) -> Void)? = nil
) throws -> (received: String, closedByPeer: Bool) {
    let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    let connected: Int32
    if ipv6 {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = UInt16(port).bigEndian
        address.sin6_addr = in6addr_loopback
        connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
    } else {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
    guard connected == 0 else { throw TestFailure("connect failed") }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let bytes = rawBytes ?? Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var halfClose = halfClose
    if case .afterSending? = halfClose {
        shutdown(fd, Int32(SHUT_WR))
        halfClose = nil
    }
    var received = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    var followUp = followUp
    var closedByPeer = false
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 {
            closedByPeer = count == 0
            break
        }
        received.append(contentsOf: buffer[0..<count])
        onReceive?(String(decoding: received, as: UTF8.self))
        if let next = followUp, String(decoding: received, as: UTF8.self).contains(next.after) {
            followUp = nil
            _ = next.send.withCString { send(fd, $0, strlen($0), 0) }
        }
        if case .after(let text)? = halfClose, String(decoding: received, as: UTF8.self).contains(text) {
            shutdown(fd, Int32(SHUT_WR))
            halfClose = nil
        }
        if !readUntilClose, let text = String(bytes: received, encoding: .utf8), text.contains("\r\n\r\n") { break }
    }
    return (String(decoding: received, as: UTF8.self), closedByPeer)
}

@discardableResult
func shell(_ executable: String, _ arguments: [String], timeout: Double = 120) throws -> (status: Int32, output: String)
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.standardError
    try process.run()
    let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    timer.cancel()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

func route(
    _ path: String, protocol routeProtocol: RouteProtocol = .auto, strip: String? = "/tts-ws",
    responseTimeout: Duration = .seconds(60)
) -> RouteConfiguration {
    RouteConfiguration(
        path: path, action: .proxy(backend: "app"), protocol: routeProtocol, stripPrefix: strip,
        timeouts: RouteTimeouts(response: responseTimeout))
}
