import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 19, item 1, with real peers: HAProxy in TCP mode (`send-proxy-v2`) in front of Ferry, a
/// client on 127.0.0.2, and a backend that echoes the request it gets.
@Suite(.serialized) struct ProxyProtocolEndToEndTests {
    @Test func theClientAddressCrossesALayer4BalancerThroughProxyV2() throws {
        guard let haproxy = Tool.path("haproxy") else { throw E2EError("haproxy is not installed") }
        guard let curl = Tool.path("curl"), let python = Tool.path("python3") else {
            throw E2EError("curl and python3 are needed")
        }
        let fixtures = ServeEndToEndTests.scripts.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FerryProxyTests/Fixtures")
        let echo = Process()
        echo.executableURL = URL(fileURLWithPath: python)
        echo.arguments = [fixtures.appendingPathComponent("framing_backend.py").path]
        let echoOutput = Pipe()
        echo.standardOutput = echoOutput
        try echo.run()
        defer { kill(echo.processIdentifier, SIGKILL) }
        var line = ""
        while !line.contains("\n") {
            let chunk = echoOutput.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line += String(decoding: chunk, as: UTF8.self)
        }
        let echoPort = try #require(
            Int(line.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""))
        let ferry = try FerryInstance(name: "proxyv2") { dir, port in
            FerryInstance.preamble(dir, port: port, workers: 1).replacingOccurrences(
                of: "[listen.tls]",
                with: "proxy_protocol = true\nproxy_protocol_from = [\"127.0.0.1\"]\n[listen.tls]")
                    + """
                    [[backend]]
                    name = "echo"
                    address = "127.0.0.1:\(echoPort)"

                    [[route]]
                    path = "/"
                    backend = "echo"
                    """
        }
        defer { ferry.stop() }
        let balancerPort = try FreePort.pick()
        let configuration = ferry.directory.appendingPathComponent("haproxy.cfg")
        try """
        global
          maxconn 100
        defaults
          mode tcp
          timeout connect 2s
          timeout client 10s
          timeout server 10s
        frontend front
          bind 127.0.0.1:\(balancerPort)
          default_backend ferries
        backend ferries
          server ferry 127.0.0.1:\(ferry.httpsPort) send-proxy-v2

        """.write(to: configuration, atomically: true, encoding: .utf8)
        let balancer = Process()
        balancer.executableURL = URL(fileURLWithPath: haproxy)
        balancer.arguments = ["-db", "-f", configuration.path]
        balancer.standardOutput = FileHandle.nullDevice
        let balancerErrors = Pipe()
        balancer.standardError = balancerErrors
        try balancer.run()
        defer { kill(balancer.processIdentifier, SIGKILL) }
        let deadline = Date().addingTimeInterval(10)
        while !FreePort.accepts(port: balancerPort) && Date() < deadline && balancer.isRunning {
            Thread.sleep(forTimeInterval: 0.05)
        }
        guard FreePort.accepts(port: balancerPort) else {
            kill(balancer.processIdentifier, SIGKILL)
            let errors = String(decoding: balancerErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw E2EError("haproxy did not listen on \(balancerPort): \(errors)")
        }

        func get(_ port: Int) throws -> (Int32, String) {
            let result = try Tool.run(
                curl,
                ["-sk", "--max-time", "5", "--interface", "127.0.0.2", "https://127.0.0.1:\(port)/request"])
            return (result.status, result.stdout)
        }
        // Through the balancer: the backend sees the client (127.0.0.2), not HAProxy (127.0.0.1).
        let through = try get(balancerPort)
        #expect(through.0 == 0 && through.1.contains("X-Forwarded-For: 127.0.0.2\r\n"), "\(through)\n\(ferry.log())")
        // Directly from 127.0.0.2 (not a trusted source): no header needed, its own address.
        let direct = try get(ferry.httpsPort)
        #expect(direct.0 == 0 && direct.1.contains("X-Forwarded-For: 127.0.0.2\r\n"), "\(direct)")
        // Directly from 127.0.0.1 (a trusted source) without a header: refused.
        let missing = try Tool.run(curl, ["-sk", "--max-time", "5", "https://127.0.0.1:\(ferry.httpsPort)/request"])
        #expect(missing.status != 0, "a trusted source without a header was served: \(missing.stdout)")
        #expect(ferry.log().contains("connection refused: PROXY protocol"))
    }
}
