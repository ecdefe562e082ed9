import FerryConfig
import Foundation
import Testing

@testable import FerryProxy

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 14, items 4 and 5: a backend away for a moment costs waiting, not errors; a dead server of
/// several costs nothing, and is ejected after `max_fails` failures in a row.
@Suite struct UpstreamRetryTests {
    /// Python's http.server on `port` (serving an empty temporary directory: 200 for "/").
    static func startHTTPServer(port: Int) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory",
            FileManager.default.temporaryDirectory.path,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// A loopback port held bound but not listening: connects to it are refused, as to a stopped
    /// backend, and no parallel test can take it (it happened: another test's server answered on
    /// a port this suite had picked as free and released). Close the descriptor to free it.
    static func reservedPort() throws -> (descriptor: CInt, port: Int) {
        let reservation = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(reservation, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(reservation, $0, &length) }
        }
        guard reservation >= 0, bound == 0 else {
            close(reservation)
            throw ReservationFailed()
        }
        return (reservation, Int(UInt16(bigEndian: address.sin_port)))
    }

    struct ReservationFailed: Error {}

    static func get(_ port: Int) throws -> String {
        try rawExchange(port: port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: 10)
    }

    /// The backend starts a second after the request arrived: the request waits and gets its 200
    /// (it got 502 at once before).
    @Test func aRequestWaitsForABackendThatComesBackWithinItsQueueTimeout() async throws {
        guard PythonBackend.available else { return }
        // The port stays bound (not listening: connects are refused, as to a stopped backend) until
        // the server starts, so that no parallel test's server can take it meanwhile (it happened:
        // a 404 from another test's backend).
        let (reservation, port) = try Self.reservedPort()
        let backend = BackendConfiguration(
            name: "app", address: .inet(host: "127.0.0.1", port: port), queueTimeout: .seconds(8))
        let proxy = try await ProxyHarness(backendPort: port, routes: [route("/", strip: nil)], backend: backend)
        let late = DispatchQueue.global()
        let server = ServerBox()
        late.asyncAfter(deadline: .now() + 1) {
            close(reservation)
            server.process = try? Self.startHTTPServer(port: port)
        }
        let started = Date()
        let response = try Self.get(proxy.port)
        #expect(response.hasPrefix("HTTP/1.1 200"), "\(response)")
        #expect(Date().timeIntervalSince(started) >= 0.9)
        if let process = server.process { kill(process.processIdentifier, SIGKILL) }
        await proxy.stop()
    }

    /// One of two servers refuses: every request still gets its 200 (retried on the other), and
    /// after max_fails failures in a row the dead one is ejected (no more connects to it).
    @Test func aDeadServerCostsNoRequestAndIsEjected() async throws {
        guard PythonBackend.available else { return }
        let live = try freePort()
        let (reservation, dead) = try Self.reservedPort()
        defer { close(reservation) }
        let process = try Self.startHTTPServer(port: live)
        defer { kill(process.processIdentifier, SIGKILL) }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, (try? Self.get(live))?.hasPrefix("HTTP/1.0 200") != true {
            try await Task.sleep(for: .milliseconds(50))
        }
        let backend = BackendConfiguration(
            name: "app", address: .inet(host: "127.0.0.1", port: dead), queueTimeout: .seconds(2),
            servers: [
                ServerConfiguration(address: .inet(host: "127.0.0.1", port: dead)),
                ServerConfiguration(address: .inet(host: "127.0.0.1", port: live)),
            ],
            balance: .roundRobin, maxFails: 3, failTimeout: .seconds(30))
        let proxy = try await ProxyHarness(backendPort: live, routes: [route("/", strip: nil)], backend: backend)
        var failed = 0
        for _ in 0..<20 where !(try Self.get(proxy.port)).hasPrefix("HTTP/1.1 200") { failed += 1 }
        #expect(failed == 0)
        let stats = await proxy.server.stats()
        let deadPool = stats.pools.first { $0.server == "127.0.0.1:\(dead)" && $0.protocol == "http" }
        let livePool = stats.pools.first { $0.server == "127.0.0.1:\(live)" && $0.protocol == "http" }
        // Round robin sent every other request to the dead server until its third failure ejected it.
        #expect(deadPool?.retries == 3, "\(stats.pools)")
        #expect(deadPool?.opened == 0)
        #expect(livePool?.opened ?? 0 >= 1)
        await proxy.stop()
    }
}

final class ServerBox: @unchecked Sendable {
    var process: Process?
}
