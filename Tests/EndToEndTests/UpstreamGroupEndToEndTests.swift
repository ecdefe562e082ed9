import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 14, items 2 and 3, with real processes: one backend of three servers (three built-in
/// WebSocket services, started by the test as external servers), two Ferry workers.
@Suite(.serialized) struct UpstreamGroupEndToEndTests {
    /// Established TCP connections whose local port is `port` (the servers' side), from
    /// /proc/net/tcp and tcp6: what each server really holds.
    static func established(localPort port: Int) -> Int {
        var count = 0
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            // Read to the end: procfs reports a size of 0, and a sized read stops after one page.
            guard let handle = FileHandle(forReadingAtPath: file) else { continue }
            let table = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
            try? handle.close()
            for line in table.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 3, fields[3] == "01", let local = fields[1].split(separator: ":").last,
                    Int(local, radix: 16) == port
                else { continue }
                count += 1
            }
        }
        return count
    }

    /// Three `ferry backend websocket` processes on free ports.
    static func startServers(in directory: URL) throws -> (ports: [Int], processes: [Process]) {
        var ports: [Int] = []
        var processes: [Process] = []
        for index in 0..<3 {
            let port = try FreePort.pick()
            let process = Process()
            process.executableURL = FerryBinary.url
            process.arguments = [
                "backend", "websocket", "--address", "127.0.0.1:\(port)", "--results-dir",
                directory.appendingPathComponent("results\(index)").path,
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            ports.append(port)
            processes.append(process)
        }
        for port in ports {
            let deadline = Date().addingTimeInterval(15)
            while !FreePort.accepts(port: port) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        }
        return (ports, processes)
    }

    @Test func threeHundredWebSocketsSpreadEvenlyOverThreeServers() throws {
        guard Tool.pythonWebSocketsAvailable() else { throw E2EError("python3 websockets is not installed") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-group-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (ports, servers) = try Self.startServers(in: directory)
        defer { for server in servers { kill(server.processIdentifier, SIGKILL) } }
        let ferry = try FerryInstance(name: "group") { dir, port in
            let state = dir.appendingPathComponent("state").path
            return """
                [master]
                workers = 2
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

                [[backend]]
                name = "tts"
                servers = [\(ports.map { "{ address = \"127.0.0.1:\($0)\" }" }.joined(separator: ", "))]
                balance = "least_connections"

                [[route]]
                path = "/tts-ws/tts"
                backend = "tts"
                protocol = "websocket"
                strip_prefix = "/tts-ws"
                """
        }
        defer { ferry.stop() }
        let python = try #require(Tool.path("python3"))
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: python)
        holder.arguments = [
            ServeEndToEndTests.scripts.appendingPathComponent("hold_websockets.py").path, "\(ferry.httpsPort)",
            "/tts-ws/tts", "300",
        ]
        let output = Pipe()
        let input = Pipe()
        holder.standardOutput = output
        holder.standardInput = input
        try holder.run()
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        var seen = ""
        while !seen.contains("\n") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        #expect(seen.hasPrefix("open 300"), "\(seen)\n\(ferry.log())")
        let held = ports.map { Self.established(localPort: $0) }
        print("WebSockets per server (least_connections, 2 workers): \(held)")
        #expect(held.reduce(0, +) == 300, "\(held)")
        #expect(held.allSatisfy { (90...110).contains($0) }, "\(held)")
        try input.fileHandleForWriting.close()
        holder.waitUntilExit()
    }

    /// `instances = 3` of the built-in static service: one killed with -9 under steady keep-alive
    /// GET load costs no request (retried on the others), and the supervisor brings it back.
    @Test func killingOneOfThreeInstancesUnderLoadFailsNoRequest() throws {
        let base = try FreePort.pickRange(3)
        let ferry = try FerryInstance(name: "instances") { dir, port in
            let state = dir.appendingPathComponent("state").path
            let www = dir.appendingPathComponent("www")
            try? FileManager.default.createDirectory(at: www, withIntermediateDirectories: true)
            try? Data(repeating: 7, count: 1024).write(to: www.appendingPathComponent("1k.bin"))
            return """
                [master]
                workers = 2
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

                [[backend]]
                name = "files"
                builtin = "static"
                root = "\(www.path)"
                address = "127.0.0.1:\(base)"
                instances = 3
                balance = "round_robin"

                [[route]]
                path = "/"
                backend = "files"
                """
        }
        defer { ferry.stop() }
        let master = MasterEndToEndTests()
        let ready = try master.waitFor(ferry) { status in
            status.backends.count == 3 && status.backends.allSatisfy { $0.state == "ready" }
        }
        #expect(ready.backends.map(\.name) == ["files/1", "files/2", "files/3"])
        for port in base..<(base + 3) { #expect(FreePort.accepts(port: port), "instance on \(port)") }
        let python = try #require(Tool.path("python3"))
        let load = Process()
        load.executableURL = URL(fileURLWithPath: python)
        load.arguments = [
            ServeEndToEndTests.scripts.appendingPathComponent("steady_gets.py").path, "\(ferry.httpsPort)",
            "/1k.bin", "4", "8",
        ]
        let output = Pipe()
        load.standardOutput = output
        try load.run()
        Thread.sleep(forTimeInterval: 1)
        let victim = try #require(ready.backends.first { $0.name == "files/2" }?.pid)
        kill(victim, SIGKILL)
        let report = output.fileHandleForReading.readDataToEndOfFile()
        load.waitUntilExit()
        struct Report: Decodable {
            var ok: Int
            var failed: Int
            var failures: [String]
        }
        let result = try JSONDecoder().decode(Report.self, from: report)
        print("steady GETs while one of three instances was killed: \(result.ok) ok, \(result.failed) failed")
        #expect(result.failed == 0, "\(result.failures)\n\(ferry.log())")
        #expect(result.ok > 100)
        let back = try master.waitFor(ferry) { status in
            status.backends.first { $0.name == "files/2" }.map { $0.state == "ready" && $0.pid != victim } == true
        }
        #expect(back.backends.first { $0.name == "files/2" }?.restarts == 1)
    }
}
