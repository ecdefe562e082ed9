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
}
