import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 18: reloads applied inside the running workers close nothing and start nothing; a
/// listener change still starts a new generation; a worker that cannot apply is replaced.
@Suite(.serialized) struct ReloadInPlaceEndToEndTests {
    static let scripts = ServeEndToEndTests.scripts

    struct Fleet {
        var ports: (a: Int, b: Int, ws: Int)
        var certificates: (String, String)
        var directory: URL
    }

    struct Status: Decodable {
        struct Worker: Decodable {
            var pid: Int32
            var generation: Int
            var slot: Int
            var state: String
            var configVersion: Int?
        }
        var generation: Int
        var configVersion: Int?
        var workers: [Worker]
        var standby: [Worker]?
    }

    /// Version `n` of the file: `/moving/` on backend a or b, `/version` answering "vN", backend
    /// c with one or two servers, the certificate alpha or beta, `max_header_count` 100 + n.
    static func config(_ n: Int, _ fleet: Fleet, directory: URL, port: Int, extra: String = "") -> String {
        let state = directory.appendingPathComponent("state").path
        let certificate = n % 2 == 0 ? fleet.certificates.0 : fleet.certificates.1
        let python = "python3"
        return """
            [master]
            workers = 2
            standby_worker = true
            control_socket = "\(state)/control.sock"
            state_dir = "\(state)"
            graceful_timeout = "3s"
            access_log = "off"
            \(extra)
            [[listen]]
            name = "https"
            address = "127.0.0.1:\(port)"
            [listen.tls]
            certificate = "\(certificate).crt"
            key = "\(certificate).key"

            [[backend]]
            name = "a"
            command = ["\(python)", "\(scripts.appendingPathComponent("named_backend.py").path)", "\(fleet.ports.a)", "a"]
            address = "127.0.0.1:\(fleet.ports.a)"

            [[backend]]
            name = "b"
            command = ["\(python)", "\(scripts.appendingPathComponent("named_backend.py").path)", "\(fleet.ports.b)", "b"]
            address = "127.0.0.1:\(fleet.ports.b)"

            [[backend]]
            name = "c"
            servers = [\(n % 2 == 0 ? "{ address = \"127.0.0.1:\(fleet.ports.a)\" }" : "{ address = \"127.0.0.1:\(fleet.ports.a)\" }, { address = \"127.0.0.1:\(fleet.ports.b)\" }")]

            [[backend]]
            name = "ws"
            command = ["\(python)", "\(scripts.appendingPathComponent("echo_ws_backend.py").path)", "\(fleet.ports.ws)"]
            address = "127.0.0.1:\(fleet.ports.ws)"

            [[route]]
            path = "/moving/"
            backend = "\(n % 2 == 0 ? "a" : "b")"

            [[route]]
            path = "/c/"
            backend = "c"

            [[route]]
            path = "/version"
            respond = 200
            body = "v\(n)"

            [[route]]
            path = "/ws"
            backend = "ws"
            protocol = "websocket"

            [limits]
            max_header_count = \(100 + n)

            """
    }

    static func makeFleet() throws -> Fleet {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-inplace-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        guard let openssl = Tool.path("openssl") else { throw E2EError("openssl is not installed") }
        var names: [String] = []
        for name in ["alpha", "beta"] {
            let base = directory.appendingPathComponent(name).path
            let result = try Tool.run(
                openssl,
                [
                    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    "\(base).key", "-out", "\(base).crt", "-subj", "/CN=\(name).test", "-days", "2",
                    "-addext", "subjectAltName=DNS:localhost",
                ])
            guard result.status == 0 else { throw E2EError("openssl req failed: \(result.stderr)") }
            names.append(base)
        }
        return Fleet(
            ports: (try FreePort.pick(), try FreePort.pick(), try FreePort.pick()), certificates: (names[0], names[1]),
            directory: directory)
    }

    static func status(_ ferry: FerryInstance) throws -> Status {
        let result = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket])
        return try JSONDecoder().decode(Status.self, from: Data(result.stdout.utf8))
    }

    static func get(_ port: Int, _ path: String) throws -> String {
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        return try Tool.run(curl, ["-sk", "--max-time", "5", "https://localhost:\(port)\(path)"]).stdout
    }

    /// The subject a new handshake gets.
    static func servedSubject(_ port: Int) throws -> String {
        guard let openssl = Tool.path("openssl") else { throw E2EError("openssl is not installed") }
        let output = try Tool.run(
            "/bin/sh",
            ["-c", "\(openssl) s_client -connect 127.0.0.1:\(port) </dev/null 2>/dev/null | grep '^subject='"]
        ).stdout
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The master's children (workers, standby, backends), from every thread's list: children
    /// belong to the thread that spawned them.
    static func workerPIDs(_ master: Int32) -> Set<Int32> {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(master)/task")) ?? []
        return Set(
            tasks.flatMap { task in
                ((try? String(contentsOfFile: "/proc/\(master)/task/\(task)/children", encoding: .utf8)) ?? "")
                    .split(separator: " ").compactMap { Int32($0) }
            })
    }

    @Test func twentyReloadsInPlaceUnderLoadCloseNothingAndStartNothing() throws {
        guard Tool.pythonWebSocketsAvailable(), let python = Tool.path("python3") else {
            throw E2EError("python3 with websockets is needed")
        }
        let fleet = try Self.makeFleet()
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        let ferry = try FerryInstance(name: "inplace") { dir, port in Self.config(0, fleet, directory: dir, port: port)
        }
        defer { ferry.stop() }
        for port in [fleet.ports.a, fleet.ports.b, fleet.ports.ws] {
            try ferry.waitUntilAccepting(port: port, timeout: 30)
        }
        #expect(try Self.get(ferry.httpsPort, "/moving/") == "a")
        let master = ferry.process.processIdentifier
        let childrenBefore = Self.workerPIDs(master)
        #expect(childrenBefore.count == 6, "2 workers, the standby, 3 spawned backends: \(childrenBefore)")
        let before = try Self.status(ferry)
        let traffic = try Traffic(python: python, port: ferry.httpsPort, fleet: fleet, seconds: 30, threads: 4)
        defer { traffic.kill() }
        #expect(traffic.opened.contains("open 100"), "\(traffic.opened)")
        Thread.sleep(forTimeInterval: 1)

        var messages: [String] = []
        for n in 1...20 {
            try Self.config(n, fleet, directory: ferry.directory, port: ferry.httpsPort).write(
                toFile: ferry.configPath, atomically: true, encoding: .utf8)
            let reload = try FerryBinary.run(["reload", "--socket", ferry.controlSocket])
            messages.append(reload.stdout)
            #expect(reload.status == 0, "\(reload.stdout)\(reload.stderr)")
            #expect(reload.stdout.contains("applied in place"), "\(reload.stdout)")
            // Visible on new requests and handshakes as soon as the reload returned.
            #expect(try Self.get(ferry.httpsPort, "/version") == "v\(n)")
            #expect(try Self.get(ferry.httpsPort, "/moving/") == (n % 2 == 0 ? "a" : "b"))
            #expect(try Self.servedSubject(ferry.httpsPort).contains(n % 2 == 0 ? "alpha.test" : "beta.test"))
        }
        let (loadReport, socketReport) = traffic.finish()
        let after = try Self.status(ferry)
        let childrenAfter = Self.workerPIDs(master)
        print(
            "in-place reloads: http \(loadReport.trimmingCharacters(in: .whitespacesAndNewlines)); websockets \(socketReport.trimmingCharacters(in: .whitespacesAndNewlines)); children \(childrenBefore.count) → \(childrenAfter.count); last reload: \(messages.last ?? "")"
        )
        let http = (try? JSONSerialization.jsonObject(with: Data(loadReport.utf8))) as? [String: Any] ?? [:]
        #expect(http["failed"] as? Int == 0, "\(loadReport)")
        #expect((http["ok"] as? Int ?? 0) > 100)
        let ws =
            (try? JSONSerialization.jsonObject(
                with: Data(socketReport.split(separator: "\n").last.map(String.init)?.utf8 ?? "".utf8)))
            as? [String: Any] ?? [:]
        #expect(ws["still_open"] as? Int == 100, "\(socketReport)")
        #expect((ws["closed"] as? [Any])?.isEmpty == true, "\(socketReport)")
        #expect(ws["failures"] as? Int == 0)
        #expect((ws["echoes"] as? Int ?? 0) > 1000)
        // Not one process started or ended: the same workers (and standby), backends untouched.
        #expect(childrenAfter == childrenBefore, "children before \(childrenBefore), after \(childrenAfter)")
        #expect(after.generation == before.generation)
        #expect(after.configVersion == (before.configVersion ?? 0) + 20)
        #expect((after.workers + (after.standby ?? [])).allSatisfy { $0.configVersion == after.configVersion })
    }

    @Test func aListenerChangeStartsANewGenerationAndRestartWorkersForcesOne() throws {
        let fleet = try Self.makeFleet()
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        let ferry = try FerryInstance(name: "newgen") { dir, port in Self.config(0, fleet, directory: dir, port: port) }
        defer { ferry.stop() }
        let before = try Self.status(ferry)
        try Self.config(0, fleet, directory: ferry.directory, port: ferry.httpsPort)
            .replacingOccurrences(of: "name = \"https\"\n", with: "name = \"https\"\nbacklog = 600\n")
            .write(toFile: ferry.configPath, atomically: true, encoding: .utf8)
        let changed = try FerryBinary.run(["reload", "--socket", ferry.controlSocket])
        #expect(changed.status == 0)
        #expect(changed.stdout.contains("new generation: listener https changed"), "\(changed.stdout)")
        #expect(try Self.status(ferry).generation == before.generation + 1)
        let forced = try FerryBinary.run(["reload", "--restart-workers", "--socket", ferry.controlSocket])
        #expect(forced.stdout.contains("new generation: --restart-workers"), "\(forced.stdout)")
        #expect(try Self.status(ferry).generation == before.generation + 2)
        let same = try FerryBinary.run(["reload", "--socket", ferry.controlSocket])
        #expect(same.stdout.contains("applied in place") && same.stdout.contains("no change"), "\(same.stdout)")
    }

    @Test func aWorkerThatCannotApplyIsReplacedAndTheReloadSaysSo() throws {
        let fleet = try Self.makeFleet()
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        let ferry = try FerryInstance(
            name: "refuse", config: { dir, port in Self.config(0, fleet, directory: dir, port: port) },
            environment: ["FERRY_TEST_REFUSE_RECONFIGURE": "1"])
        defer { ferry.stop() }
        let before = try Self.status(ferry)
        try (Self.config(1, fleet, directory: ferry.directory, port: ferry.httpsPort) + "# ferry-test: refuse\n").write(
            toFile: ferry.configPath, atomically: true, encoding: .utf8)
        let reload = try FerryBinary.run(["reload", "--socket", ferry.controlSocket])
        #expect(reload.status == 1)
        #expect(reload.stdout.contains("refused on purpose") && reload.stdout.contains("replaced"), "\(reload.stdout)")
        // The replacements boot on the new file (a new process reads it at boot; the fault is only
        // in applying it in place) and the old workers go.
        let deadline = Date().addingTimeInterval(20)
        var current = try Self.status(ferry)
        while Date() < deadline {
            current = try Self.status(ferry)
            let serving = current.workers.filter { $0.state == "ready" }
            if serving.count == 2, Set(serving.map(\.pid)).isDisjoint(with: before.workers.map(\.pid)),
                !current.workers.contains(where: { $0.state == "draining" })
            {
                break
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let serving = current.workers.filter { $0.state == "ready" }
        #expect(serving.count == 2 && Set(serving.map(\.pid)).isDisjoint(with: before.workers.map(\.pid)), "\(current)")
        #expect(serving.allSatisfy { $0.configVersion == current.configVersion })
        #expect(try Self.get(ferry.httpsPort, "/version") == "v1")
    }

    /// Resident memory of the master's children (workers, standby, backends), in KiB.
    static func childrenRSS(_ master: Int32) -> Int {
        workerPIDs(master).reduce(0) { total, pid in
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return total + (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0)
        }
    }

    /// Ten reloads a second for a minute under load (keep-alive requests, 100 echoing WebSockets):
    /// no failure, no WebSocket closed, the same processes, memory flat.
    @Test func aReloadStormOfSixHundredIsCheap() throws {
        guard Tool.pythonWebSocketsAvailable(), let python = Tool.path("python3") else {
            throw E2EError("python3 with websockets is needed")
        }
        let fleet = try Self.makeFleet()
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        let ferry = try FerryInstance(name: "storm") { dir, port in Self.config(0, fleet, directory: dir, port: port) }
        defer { ferry.stop() }
        for port in [fleet.ports.a, fleet.ports.b, fleet.ports.ws] {
            try ferry.waitUntilAccepting(port: port, timeout: 30)
        }
        let master = ferry.process.processIdentifier
        let traffic = try Traffic(python: python, port: ferry.httpsPort, fleet: fleet, seconds: 66, threads: 2)
        defer { traffic.kill() }
        Thread.sleep(forTimeInterval: 3)
        let childrenBefore = Self.workerPIDs(master)
        let rssBefore = Self.childrenRSS(master)
        let storm = try Tool.run(
            python,
            [
                Self.scripts.appendingPathComponent("reload_storm.py").path, ferry.controlSocket, ferry.configPath,
                "10",
                "60",
            ], timeout: 120)
        let rssAfter = Self.childrenRSS(master)
        let childrenAfter = Self.workerPIDs(master)
        let (loadReport, socketReport) = traffic.finish()
        print(
            "reload storm: \(storm.stdout.trimmingCharacters(in: .whitespacesAndNewlines)); http \(loadReport.trimmingCharacters(in: .whitespacesAndNewlines)); websockets \(socketReport.split(separator: "\n").last ?? ""); children \(childrenBefore.count) → \(childrenAfter.count); their RSS \(rssBefore) KiB → \(rssAfter) KiB"
        )
        let report = (try? JSONSerialization.jsonObject(with: Data(storm.stdout.utf8))) as? [String: Any] ?? [:]
        #expect((report["reloads"] as? Int ?? 0) >= 500, "\(storm.stdout)\(storm.stderr)")
        #expect(report["failed"] as? Int == 0, "\(storm.stdout)")
        #expect(try Self.get(ferry.httpsPort, "/version") == report["last_body"] as? String)
        let http = (try? JSONSerialization.jsonObject(with: Data(loadReport.utf8))) as? [String: Any] ?? [:]
        #expect(http["failed"] as? Int == 0, "\(loadReport)")
        let ws =
            (try? JSONSerialization.jsonObject(
                with: Data((socketReport.split(separator: "\n").last.map(String.init) ?? "").utf8))) as? [String: Any]
            ?? [:]
        #expect(ws["still_open"] as? Int == 100, "\(socketReport)")
        #expect(childrenAfter == childrenBefore, "no process started or ended")
        // Flat: the storm may not grow the processes' memory by more than a few MiB in all.
        #expect(rssAfter - rssBefore < 16 * 1024, "RSS \(rssBefore) → \(rssAfter) KiB")
    }
}

/// The load of the reload tests: keep-alive GETs on /c/ (`steady_gets.py`) and 100 WebSockets
/// echoing every 200 ms on /ws (`echo_websockets.py`), until `finish`.
struct Traffic {
    let sockets = Process()
    let socketsOut = Pipe()
    let load = Process()
    let loadOut = Pipe()
    let stop: String
    /// What the WebSocket script said once connected ("open N").
    let opened: String

    init(python: String, port: Int, fleet: ReloadInPlaceEndToEndTests.Fleet, seconds: Int, threads: Int) throws {
        let scripts = ReloadInPlaceEndToEndTests.scripts
        stop = fleet.directory.appendingPathComponent("stop").path
        sockets.executableURL = URL(fileURLWithPath: python)
        sockets.arguments = [
            scripts.appendingPathComponent("echo_websockets.py").path, "\(port)", "/ws", "100", stop, "\(seconds + 60)",
        ]
        sockets.standardOutput = socketsOut
        try sockets.run()
        opened = String(decoding: socketsOut.fileHandleForReading.availableData, as: UTF8.self)
        load.executableURL = URL(fileURLWithPath: python)
        load.arguments = [
            scripts.appendingPathComponent("steady_gets.py").path, "\(port)", "/c/", "\(seconds)", "\(threads)",
        ]
        load.standardOutput = loadOut
        try load.run()
    }

    /// Stops the WebSockets, waits for both scripts; their JSON reports (HTTP, WebSockets).
    func finish() -> (String, String) {
        FileManager.default.createFile(atPath: stop, contents: nil)
        let loadReport = String(decoding: loadOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        load.waitUntilExit()
        sockets.waitUntilExit()
        let socketReport = String(decoding: socketsOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (loadReport, socketReport)
    }

    func kill() {
        for process in [sockets, load] where process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
    }
}

/// Certificates from files reload by themselves (issue 17, item 4): a renewal written over the
/// files reaches new handshakes without a reload, an open connection goes on, no process starts;
/// a half-written renewal (certificate without its key) is refused and the old pair keeps serving.
@Suite(.serialized) struct CertificateRenewalEndToEndTests {
    @Test func aRenewedCertificateOnDiskIsServedToNewHandshakesWithoutAReload() throws {
        guard let python = Tool.path("python3") else { throw E2EError("python3 is needed") }
        let fleet = try ReloadInPlaceEndToEndTests.makeFleet()
        defer { try? FileManager.default.removeItem(at: fleet.directory) }
        let live = fleet.directory.appendingPathComponent("live").path
        for suffix in [".crt", ".key"] {
            try FileManager.default.copyItem(atPath: fleet.certificates.0 + suffix, toPath: live + suffix)
        }
        let ferry = try FerryInstance(name: "renew") { dir, port in
            let state = dir.appendingPathComponent("state").path
            return """
                [master]
                workers = 1
                control_socket = "\(state)/control.sock"
                state_dir = "\(state)"
                [[listen]]
                name = "https"
                address = "127.0.0.1:\(port)"
                [listen.tls]
                certificate = "\(live).crt"
                key = "\(live).key"
                [[route]]
                path = "/"
                respond = 200
                body = "ok"
                """
        }
        defer { ferry.stop() }
        let subject = { try ReloadInPlaceEndToEndTests.servedSubject(ferry.httpsPort) }
        #expect(try subject().contains("alpha.test"))
        let workers = ReloadInPlaceEndToEndTests.workerPIDs(ferry.process.processIdentifier)
        // One keep-alive connection, open across the renewal: a request before, one after.
        let kept = Process()
        kept.executableURL = URL(fileURLWithPath: python)
        kept.arguments = [
            "-c",
            """
            import http.client, ssl, sys
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection("127.0.0.1", \(ferry.httpsPort), context=context, timeout=10)
            for _ in range(2):
                connection.request("GET", "/"); answer = connection.getresponse().read()
                print(answer.decode(), connection.sock.getpeercert(binary_form=True) is not None, flush=True)
                sys.stdin.readline()
            """,
        ]
        let keptIn = Pipe()
        let keptOut = Pipe()
        kept.standardInput = keptIn
        kept.standardOutput = keptOut
        try kept.run()
        defer { if kept.isRunning { kill(kept.processIdentifier, SIGKILL) } }
        func line() -> String {
            var text = ""
            while !text.contains("\n") {
                let chunk = keptOut.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            return text
        }
        #expect(line() == "ok True\n")

        func install(_ source: String, _ suffix: String) throws {
            try? FileManager.default.removeItem(atPath: live + suffix + ".new")
            try FileManager.default.copyItem(atPath: source + suffix, toPath: live + suffix + ".new")
            #expect(rename(live + suffix + ".new", live + suffix) == 0)
        }
        try install(fleet.certificates.1, ".key")
        try install(fleet.certificates.1, ".crt")
        let deadline = Date().addingTimeInterval(10)
        while try !subject().contains("beta.test") && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        #expect(try subject().contains("beta.test"), "the renewed certificate is served")
        keptIn.fileHandleForWriting.write(Data("\n".utf8))
        #expect(line() == "ok True\n", "the connection opened before the renewal goes on")
        #expect(ReloadInPlaceEndToEndTests.workerPIDs(ferry.process.processIdentifier) == workers)
        #expect(ferry.log().contains("certificate files changed; applying them in place"))
        let metrics = try FerryBinary.run(["metrics", "--socket", ferry.controlSocket]).stdout
        #expect(
            metrics.contains("ferry_certificate_days_left{listener=\"https\",path=\"\(live).crt\",source=\"file\"} 2"),
            "\(metrics)")

        // Half a renewal: alpha's certificate over beta's key. Refused; beta keeps serving.
        try install(fleet.certificates.0, ".crt")
        let refusedBy = Date().addingTimeInterval(10)
        while !ferry.log().contains("cannot be used") && Date() < refusedBy { Thread.sleep(forTimeInterval: 0.2) }
        #expect(ferry.log().contains("certificate files changed but cannot be used"))
        #expect(try subject().contains("beta.test"))
        #expect(ReloadInPlaceEndToEndTests.workerPIDs(ferry.process.processIdentifier) == workers)
    }
}

/// A `command` backend is not left running when the master is killed with -9 (it was: an
/// arbitrary program does not watch its parent; `ferry exec-as` now sets the death signal).
@Suite struct BackendOrphanEndToEndTests {
    @Test func aCommandBackendDiesWithAMasterKilledHard() throws {
        let port = try FreePort.pick()
        let ferry = try FerryInstance(name: "orphan") { dir, httpsPort in
            FerryInstance.preamble(dir, port: httpsPort, workers: 1)
                + """
                [[backend]]
                name = "app"
                command = ["python3", "\(ReloadInPlaceEndToEndTests.scripts.appendingPathComponent("named_backend.py").path)", "\(port)", "app"]
                address = "127.0.0.1:\(port)"

                [[route]]
                path = "/"
                backend = "app"
                """
        }
        defer { ferry.stop() }
        try ferry.waitUntilAccepting(port: port, timeout: 30)
        #expect(try ReloadInPlaceEndToEndTests.get(ferry.httpsPort, "/") == "app", "the backend runs through exec-as")
        let status = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket]).stdout
        let backends = ((try? JSONSerialization.jsonObject(with: Data(status.utf8))) as? [String: Any])?["backends"]
        let pid = try #require((backends as? [[String: Any]])?.first { $0["name"] as? String == "app" }?["pid"] as? Int)
        kill(ferry.process.processIdentifier, SIGKILL)
        // Gone, or a zombie waiting for whoever inherited it to reap it.
        func alive() -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
            return stat.split(separator: ")").last?.split(separator: " ").first != "Z"
        }
        let deadline = Date().addingTimeInterval(5)
        while alive() && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(!alive(), "backend \(pid) outlived its master")
        // (Whether its port still accepts is not asked: tests run in parallel, and another test's
        // backend may have picked the freed port in between, as happened once.)
    }
}
