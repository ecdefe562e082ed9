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

    /// Ferry with one WebSocket backend `tts` of the given servers, two workers.
    static func startFerry(name: String, servers ports: [Int]) throws -> FerryInstance {
        try FerryInstance(name: name) { dir, port in
            return FerryInstance.preamble(dir, port: port, workers: 2) + """
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
    }

    /// `hold_websockets.py` holding `count` WebSockets through `ferry`; returns once they are open
    /// (closing the returned pipe lets it close them and exit).
    static func holdWebSockets(_ ferry: FerryInstance, _ count: Int) throws -> (Process, Pipe, String) {
        let python = try #require(Tool.path("python3"))
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: python)
        holder.arguments = [
            ServeEndToEndTests.scripts.appendingPathComponent("hold_websockets.py").path, "\(ferry.httpsPort)",
            "/tts-ws/tts", "\(count)",
        ]
        let output = Pipe()
        let input = Pipe()
        holder.standardOutput = output
        holder.standardInput = input
        try holder.run()
        var seen = ""
        while !seen.contains("\n") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        return (holder, input, seen)
    }

    /// `ferry server drain`: the drained server gets no new WebSocket and keeps the ones it has;
    /// `enable` brings it back into rotation.
    @Test func aDrainedServerTakesNoNewWebSocketsAndKeepsItsOwn() throws {
        guard Tool.pythonWebSocketsAvailable() else { throw E2EError("python3 websockets is not installed") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-drain-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (ports, servers) = try Self.startServers(in: directory)
        defer { for server in servers { kill(server.processIdentifier, SIGKILL) } }
        let ferry = try Self.startFerry(name: "drain", servers: ports)
        defer { ferry.stop() }
        let first = try Self.holdWebSockets(ferry, 30)
        defer { kill(first.0.processIdentifier, SIGKILL) }
        #expect(first.2.hasPrefix("open 30"), "\(first.2)")
        // Each worker balances its own share: within `workers` (2) of even.
        let before = ports.map { Self.established(localPort: $0) }
        #expect(before.allSatisfy { (8...12).contains($0) } && before.reduce(0, +) == 30, "\(before)")
        let drained = try FerryBinary.run(
            ["server", "drain", "tts", "127.0.0.1:\(ports[1])", "--socket", ferry.controlSocket])
        #expect(drained.status == 0, "\(drained.stderr)")
        #expect(drained.stdout.contains("is draining"))
        Thread.sleep(forTimeInterval: 0.3)  // the workers hear of it over their control channel
        let second = try Self.holdWebSockets(ferry, 30)
        defer { kill(second.0.processIdentifier, SIGKILL) }
        let afterDrain = ports.map { Self.established(localPort: $0) }
        print("WebSockets per server after draining the second: \(afterDrain)")
        // Counted from /proc/net/tcp while other tests run: one stray entry is tolerated (seen once
        // in CI, 51 for 50); without the drain the second server would have taken about 10 more.
        #expect(afterDrain[1] - before[1] <= 1, "the drained server kept its own and got none of the 30 new")
        #expect(afterDrain[0] + afterDrain[2] >= before[0] + before[2] + 29, "\(afterDrain)")
        let status = try FerryBinary.run(["status", "--socket", ferry.controlSocket]).stdout
        #expect(status.contains("draining"), "\(status)")
        let metrics = try FerryBinary.run(["metrics", "--socket", ferry.controlSocket]).stdout
        #expect(
            metrics.contains(
                "ferry_server_state{backend=\"tts\",server=\"127.0.0.1:\(ports[1])\",state=\"draining\"} 1"),
            "\(metrics)")
        let enabled = try FerryBinary.run(["server", "enable", "tts", "2", "--socket", ferry.controlSocket])
        #expect(enabled.status == 0, "\(enabled.stderr)")
        Thread.sleep(forTimeInterval: 0.3)
        let third = try Self.holdWebSockets(ferry, 30)
        defer { kill(third.0.processIdentifier, SIGKILL) }
        let afterEnable = ports.map { Self.established(localPort: $0) }
        print("WebSockets per server after enabling it again and 30 more: \(afterEnable)")
        #expect(afterEnable[1] > afterDrain[1] + 10, "back in rotation and the least loaded: most of the new ones")
        let unknown = try FerryBinary.run(["server", "drain", "tts", "9.9.9.9:1", "--socket", ferry.controlSocket])
        #expect(unknown.status == 1 && unknown.stderr.contains("has no server"))
        // Drained with a deadline: after it, the WebSockets it still holds get 1001 and close.
        let held = Self.established(localPort: ports[0])
        let deadlined = try FerryBinary.run(
            ["server", "drain", "tts", "1", "--deadline", "1", "--socket", ferry.controlSocket])
        #expect(deadlined.status == 0, "\(deadlined.stderr)")
        #expect(held > 0 && Self.established(localPort: ports[0]) == held, "kept until the deadline")
        let closedBy = Date().addingTimeInterval(6)
        while Self.established(localPort: ports[0]) > 0 && Date() < closedBy { Thread.sleep(forTimeInterval: 0.1) }
        #expect(Self.established(localPort: ports[0]) == 0, "closed at the deadline")
        #expect(ferry.log().contains("drain deadline: closing the server's WebSockets with 1001"))
        for holder in [first, second, third] { try holder.1.fileHandleForWriting.close() }
    }

    @Test func threeHundredWebSocketsSpreadEvenlyOverThreeServers() throws {
        guard Tool.pythonWebSocketsAvailable() else { throw E2EError("python3 websockets is not installed") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-group-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (ports, servers) = try Self.startServers(in: directory)
        defer { for server in servers { kill(server.processIdentifier, SIGKILL) } }
        let ferry = try Self.startFerry(name: "group", servers: ports)
        defer { ferry.stop() }
        let (holder, input, seen) = try Self.holdWebSockets(ferry, 300)
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        #expect(seen.hasPrefix("open 300"), "\(seen)\n\(ferry.log())")
        // A probe of the master's (a short-lived connection to a server) may be counted with the
        // WebSockets once in a while (seen once: 301): look again for up to 2 s.
        var held = ports.map { Self.established(localPort: $0) }
        for _ in 0..<20 where held.reduce(0, +) != 300 {
            Thread.sleep(forTimeInterval: 0.1)
            held = ports.map { Self.established(localPort: $0) }
        }
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
            let www = dir.appendingPathComponent("www")
            try? FileManager.default.createDirectory(at: www, withIntermediateDirectories: true)
            try? Data(repeating: 7, count: 1024).write(to: www.appendingPathComponent("1k.bin"))
            return FerryInstance.preamble(dir, port: port, workers: 2) + """
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

    /// Python's http.server on `port`, serving `directory`.
    static func httpServer(port: Int, directory: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Tool.path("python3")))
        process.arguments = ["-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory", directory.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while !FreePort.accepts(port: port) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return process
    }

    /// Active checks (in the master, every 200 ms, fall 2, rise 2): a killed server is marked down
    /// within fall × interval and requests avoid it; restarted, it is back after rise checks.
    @Test func activeHealthChecksTakeADeadServerOutAndBringItBack() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-health-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data("ok\n".utf8).write(to: directory.appendingPathComponent("health"))
        let ports = try (0..<3).map { _ in try FreePort.pick() }
        var servers = try ports.map { try Self.httpServer(port: $0, directory: directory) }
        defer { for server in servers { kill(server.processIdentifier, SIGKILL) } }
        let ferry = try FerryInstance(name: "health") { dir, port in
            return FerryInstance.preamble(dir, port: port, workers: 1) + """
                [[backend]]
                name = "app"
                servers = [\(ports.map { "{ address = \"127.0.0.1:\($0)\" }" }.joined(separator: ", "))]
                max_fails = 0
                [backend.health]
                path = "/health"
                interval = "200ms"
                timeout = "150ms"
                rise = 2
                fall = 2

                [[route]]
                path = "/"
                backend = "app"
                """
        }
        defer { ferry.stop() }
        func health() throws -> [String: String] {
            let json = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket]).stdout
            let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
            let rows = document["health"] as? [[String: Any]] ?? []
            return Dictionary(
                uniqueKeysWithValues: rows.map { ($0["server"] as? String ?? "", $0["state"] as? String ?? "") })
        }
        func waitUntil(_ timeout: TimeInterval, _ condition: ([String: String]) -> Bool) throws -> TimeInterval? {
            let started = Date()
            while Date().timeIntervalSince(started) < timeout {
                if condition(try health()) { return Date().timeIntervalSince(started) }
                Thread.sleep(forTimeInterval: 0.05)
            }
            return nil
        }
        let victim = "127.0.0.1:\(ports[1])"
        #expect(try waitUntil(5) { $0.count == 3 && $0.values.allSatisfy { $0 == "up" } } != nil)
        kill(servers[1].processIdentifier, SIGKILL)
        servers[1].waitUntilExit()
        let down = try waitUntil(5) { $0[victim] == "down" }
        print("health: marked down \(down.map { String(format: "%.2f", $0) } ?? "never") s after the kill")
        #expect(down != nil && down! < 1.5, "fall 2 x 200 ms, plus a check's timeout")
        #expect(ferry.log().contains("server failed its health checks"))
        // The workers were told: with passive ejection off (max_fails = 0), every request succeeds
        // at once on the two others (the dead one is not even tried).
        let curl = try #require(Tool.path("curl"))
        for _ in 0..<10 {
            let code = try Tool.run(
                curl, ["-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:\(ferry.httpsPort)/health"]
            ).stdout
            #expect(code == "200")
        }
        // Proof that the workers skip it: no connect was even tried there (each would count as a
        // retry on its pool). Read after a heartbeat has carried the counters to the master.
        Thread.sleep(forTimeInterval: 1.5)
        let json = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket]).stdout
        let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
        let pools = document["pools"] as? [[String: Any]] ?? []
        let dead = pools.first { $0["server"] as? String == victim && $0["protocol"] as? String == "http" }
        #expect(dead?["retries"] as? Int == 0, "\(pools)")
        #expect(pools.map { $0["opened"] as? Int ?? 0 }.reduce(0, +) >= 1, "\(pools)")
        servers[1] = try Self.httpServer(port: ports[1], directory: directory)
        let up = try waitUntil(5) { $0[victim] == "up" }
        print("health: back up \(up.map { String(format: "%.2f", $0) } ?? "never") s after the restart")
        #expect(up != nil && up! < 1.5)
        let table = try FerryBinary.run(["status", "--socket", ferry.controlSocket]).stdout
        #expect(table.contains("HEALTH") && table.contains("HTTP 200"), "\(table)")
    }

    /// The seed's Tornado app as a `command` backend with `instances = 3` ({port} in its command):
    /// three supervised processes, requests spread over them, and a `hash` on a header sends one
    /// client's requests to one instance.
    @Test func aTornadoCommandBackendRunsAsThreeInstances() throws {
        guard Tool.pythonHas("tornado"), let python = Tool.path("python3") else {
            throw E2EError("python3 tornado is not installed")
        }
        let app = ServeEndToEndTests.scripts.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FerryProxyTests/Fixtures/seed_tornado_app.py").path
        let base = try FreePort.pickRange(3)
        let ferry = try FerryInstance(name: "tornado") { dir, port in
            return FerryInstance.preamble(dir, port: port, workers: 1) + """
                [[backend]]
                name = "app"
                command = ["\(python)", "\(app)", "\(dir.path)", "{port}"]
                address = "127.0.0.1:\(base)"
                instances = 3
                balance = "round_robin"

                [[backend]]
                name = "sticky"
                servers = [\((0..<3).map { "{ address = \"127.0.0.1:\(base + $0)\" }" }.joined(separator: ", "))]
                balance = "hash"
                hash_key = "header:X-User"

                [[route]]
                path = "/"
                backend = "app"

                [[backend]]
                name = "cookie"
                servers = [\((0..<3).map { "{ address = \"127.0.0.1:\(base + $0)\" }" }.joined(separator: ", "))]
                balance = "round_robin"
                sticky_cookie = "srv"

                [[route]]
                path = "/sticky/"
                backend = "sticky"
                rewrite = "/"

                [[route]]
                path = "/cookie/"
                backend = "cookie"
                rewrite = "/"
                """
        }
        defer { ferry.stop() }
        let ready = try MasterEndToEndTests().waitFor(ferry) { status in
            status.backends.filter { $0.name.hasPrefix("app/") }.count == 3
                && status.backends.filter { $0.name.hasPrefix("app/") }.allSatisfy { $0.state == "ready" }
        }
        #expect(Set(ready.backends.compactMap(\.pid)).count == 3)
        let curl = try #require(Tool.path("curl"))
        func whoami(_ path: String, user: String? = nil) throws -> String {
            try Tool.run(
                curl,
                ["-sk", "https://127.0.0.1:\(ferry.httpsPort)\(path)"] + (user.map { ["-H", "X-User: \($0)"] } ?? [])
            ).stdout
        }
        var seen: [String: Int] = [:]
        for _ in 0..<30 { seen[try whoami("/whoami"), default: 0] += 1 }
        print("round robin over three Tornado instances: \(seen)")
        #expect(seen == ["\(base)": 10, "\(base + 1)": 10, "\(base + 2)": 10])
        // Sticky cookie: round robin would rotate; the cookie Ferry set keeps the client on one.
        let jar = ferry.directory.appendingPathComponent("cookies").path
        let first = try Tool.run(
            curl, ["-sk", "-D", "-", "-c", jar, "https://127.0.0.1:\(ferry.httpsPort)/cookie/whoami"]
        ).stdout
        #expect(first.lowercased().contains("set-cookie: srv="), "\(first)")
        #expect(first.contains("HttpOnly") && first.contains("Secure"), "\(first)")
        // The body after the head (curl -D - prints the head first; "\r\n" is one Character).
        func body(_ text: String) -> String { text.components(separatedBy: "\r\n\r\n").last ?? "" }
        let home = body(first)
        for _ in 0..<6 {
            let again = try Tool.run(
                curl, ["-sk", "-D", "-", "-b", jar, "https://127.0.0.1:\(ferry.httpsPort)/cookie/whoami"]
            ).stdout
            #expect(body(again) == home, "\(again)")
            #expect(!again.lowercased().contains("set-cookie"), "no new cookie while the server serves: \(again)")
        }
        for user in ["alice", "bob", "carol", "dave"] {
            let first = try whoami("/sticky/whoami", user: user)
            for _ in 0..<4 { #expect(try whoami("/sticky/whoami", user: user) == first, "\(user)") }
        }
    }
}
