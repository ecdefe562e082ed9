import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The master through the real binary: status, crashes, reloads, socket activation, the control
/// socket's permissions.
@Suite(.serialized) struct MasterEndToEndTests {
    struct StatusJSON: Decodable {
        struct Worker: Decodable {
            var pid: Int32
            var generation: Int
            var slot: Int
            var state: String
            var restarts: Int
            var accepting: Bool?
        }

        struct Backend: Decodable {
            var name: String
            var pid: Int32?
            var state: String
            var restarts: Int
        }

        struct Reload: Decodable {
            var ok: Bool
            var message: String
        }

        var masterPID: Int32
        var generation: Int
        var workers: [Worker]
        var backends: [Backend]
        struct UnservedSlot: Decodable {
            var slot: Int
            var reason: String
        }

        var standby: [Worker]?
        var lastReload: Reload?
        var unservedSlots: [UnservedSlot]?
    }

    func status(_ ferry: FerryInstance) throws -> StatusJSON {
        let result = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket])
        guard result.status == 0 else { throw E2EError("ferry status failed: \(result.stderr)") }
        return try JSONDecoder().decode(StatusJSON.self, from: Data(result.stdout.utf8))
    }

    /// Polls `condition` on the status document (bounded).
    func waitFor(_ ferry: FerryInstance, timeout: TimeInterval = 15, _ condition: (StatusJSON) -> Bool) throws
        -> StatusJSON
    {
        let deadline = Date().addingTimeInterval(timeout)
        var last: StatusJSON?
        while Date() < deadline {
            if let current = try? status(ferry) {
                last = current
                if condition(current) { return current }
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw E2EError("condition not met within \(timeout)s; last status: \(String(describing: last))\n\(ferry.log())")
    }

    func get(_ ferry: FerryInstance, _ path: String = "/", maxTime: Int = 10) throws -> String {
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        return try Tool.run(
            curl,
            [
                "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "\(maxTime)", "--cacert",
                ferry.certificatePath,
                "https://localhost:\(ferry.httpsPort)\(path)",
            ]
        ).stdout
    }

    @Test func statusShowsWorkersAndBothBackendsReady() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "status", workers: 2)
        defer { ferry.stop() }
        let current = try waitFor(ferry) { status in
            status.workers.filter { $0.state == "ready" }.count == 2
                && status.backends.allSatisfy { $0.state == "ready" }
        }
        #expect(current.backends.map(\.name) == ["tts", "files"])
        let table = try FerryBinary.run(["status", "--socket", ferry.controlSocket])
        #expect(table.stdout.contains("WORKER PID"))
        #expect(table.stdout.contains("POOL"))
        let byConfig = try FerryBinary.run(["status", "--config", ferry.configPath])
        #expect(byConfig.status == 0)
        let metrics = try FerryBinary.run(["metrics", "--socket", ferry.controlSocket])
        #expect(metrics.stdout.contains("ferry_generation 1"))
    }

    /// Issue 21, item 2: workers were spawned through /proc/self/exe, so `ps` and `pgrep` saw
    /// "exe". Every child of the master is now "ferry" with a title saying what it is.
    @Test func childrenShowUpAsFerryWithATitle() throws {
        guard let ps = Tool.path("ps"), let pgrep = Tool.path("pgrep") else {
            throw E2EError("ps/pgrep are not installed (procps)")
        }
        let ferry = try ServeEndToEndTests.startSeed(name: "names", workers: 2)
        defer { ferry.stop() }
        _ = try waitFor(ferry) { status in
            status.workers.filter { $0.state == "ready" }.count == 2
                && status.backends.allSatisfy { $0.state == "ready" }
                && status.standby?.first?.state == "standby"
        }
        let master = "\(ferry.process.processIdentifier)"
        let listing = try Tool.run(ps, ["-o", "comm=,args=", "--ppid", master]).stdout
        let lines = listing.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        let comms = lines.compactMap { $0.first.map(String.init) }
        let titles = Set(lines.map { $0.dropFirst().joined(separator: " ") })
        #expect(comms == Array(repeating: "ferry", count: 5), "\(listing)")
        #expect(
            titles == [
                "ferry: worker g1/s0", "ferry: worker g1/s1", "ferry: worker g1/standby", "ferry: backend tts",
                "ferry: backend files",
            ],
            "\(listing)")
        let found = try Tool.run(pgrep, ["-x", "-P", master, "ferry"]).stdout
        #expect(found.split(separator: "\n").count == 5, "pgrep -x -P \(master) ferry: \(found)")
    }

    /// Issue 21, item 3: a booted standby worker takes over the slot of a worker killed with -9
    /// (no process to start: the slot accepts again in ~10 ms instead of ~80), and a new standby
    /// is booted after it. The time itself is measured by Benchmarks/respawn.py, not here.
    @Test func aKilledWorkersSlotIsTakenOverByTheStandby() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "standby", workers: 1)
        defer { ferry.stop() }
        let before = try waitFor(ferry) { status in
            status.workers.contains { $0.state == "ready" } && status.standby?.first?.state == "standby"
        }
        let victim = before.workers[0].pid
        let standby = try #require(before.standby?.first?.pid)
        kill(victim, SIGKILL)
        let after = try waitFor(ferry) { status in
            status.workers.contains { $0.pid == standby && $0.slot == 0 && $0.state == "ready" }
                && status.standby?.first.map { $0.pid != standby && $0.state == "standby" } == true
        }
        #expect(!after.workers.contains { $0.pid == victim })
        #expect(after.workers.count == 1)
        #expect(try get(ferry) == "200")
        let title = try String(contentsOfFile: "/proc/\(standby)/cmdline", encoding: .utf8)
        #expect(title.hasPrefix("ferry: worker g1/s0\u{0}"), "\(title.debugDescription)")
        #expect(ferry.log().contains("the standby worker takes its slot"))
    }

    @Test func killedWorkerIsRespawned() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "killworker", workers: 1, standby: false)
        defer { ferry.stop() }
        let before = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" } }
        let victim = before.workers[0].pid
        kill(victim, SIGKILL)
        let after = try waitFor(ferry) { status in status.workers.contains { $0.pid != victim && $0.state == "ready" } }
        #expect(!after.workers.contains { $0.pid == victim })
        #expect(try get(ferry) == "200")
    }

    @Test func hungWorkerMissingHeartbeatsIsReplaced() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "hung", workers: 1)
        defer { ferry.stop() }
        let before = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" } }
        let victim = before.workers[0].pid
        // A stopped process sends no heartbeat: the master terminates it (KILL after 5 s) and respawns.
        kill(victim, SIGSTOP)
        let after = try waitFor(ferry, timeout: 20) { status in
            status.workers.contains { $0.pid != victim && $0.state == "ready" }
                && !status.workers.contains { $0.pid == victim }
        }
        #expect(after.workers.count == 1)
        #expect(try get(ferry) == "200")
    }

    @Test func workerThatCannotBootIsNotRespawnedInALoop() throws {
        // Without a standby: one booted before the certificate broke would take the slot over.
        let ferry = try ServeEndToEndTests.startSeed(name: "noboot", workers: 1, standby: false)
        defer { ferry.stop() }
        let before = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" } }
        // The certificate turns unreadable garbage behind the master's back; a new worker cannot boot.
        try "garbage".write(toFile: ferry.certificatePath, atomically: true, encoding: .utf8)
        kill(before.workers[0].pid, SIGKILL)
        let after = try waitFor(ferry, timeout: 15) { status in
            status.workers.isEmpty && status.unservedSlots?.first?.slot == 0
        }
        // Said as what it is, with the worker's reason, not as a failed reload (none happened).
        #expect(after.lastReload == nil)
        let reason = try #require(after.unservedSlots?.first?.reason)
        #expect(reason.lowercased().contains("certificate"), "\(reason)")
        let table = try FerryBinary.run(["status", "--socket", ferry.controlSocket]).stdout
        #expect(table.contains("slot 0: NO WORKER"), "\(table)")
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try status(ferry).workers.isEmpty, "no respawn loop")
        #expect(ferry.log().contains("worker could not boot"))
        // Fixed and reloaded: the slot is served again and no longer reported.
        try FileManager.default.removeItem(atPath: ferry.certificatePath)
        kill(ferry.process.processIdentifier, SIGHUP)
        let fixed = try waitFor(ferry, timeout: 20) { status in
            status.workers.contains { $0.state == "ready" } && status.unservedSlots == nil
        }
        #expect(fixed.lastReload?.ok == true)
    }

    @Test func killedBackendIsRestartedAndServesAgain() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "killbackend", workers: 1)
        defer { ferry.stop() }
        let before = try waitFor(ferry) { $0.backends.allSatisfy { $0.state == "ready" } }
        let files = try #require(before.backends.first { $0.name == "files" }?.pid)
        kill(files, SIGKILL)
        // Meanwhile requests wait for the backend (queue timeout) or get 503, never hang.
        let during = try get(ferry)
        #expect(during == "200" || during == "503")
        let after = try waitFor(ferry) { status in
            status.backends.contains {
                $0.name == "files" && $0.state == "ready" && $0.restarts == 1 && $0.pid != files
            }
        }
        #expect(after.backends.first { $0.name == "files" }?.restarts == 1)
        #expect(try get(ferry) == "200")
    }

    @Test func killedMasterTakesEveryChildWithIt() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "killmaster", workers: 2)
        let current = try waitFor(ferry) { status in
            status.workers.filter { $0.state == "ready" }.count == 2 && status.backends.allSatisfy { $0.pid != nil }
        }
        let children = current.workers.map(\.pid) + current.backends.compactMap(\.pid)
        kill(current.masterPID, SIGKILL)
        let deadline = Date().addingTimeInterval(8)
        var alive = children
        while Date() < deadline && !alive.isEmpty {
            Thread.sleep(forTimeInterval: 0.2)
            alive = alive.filter { kill($0, 0) == 0 && !isZombie($0) }
        }
        #expect(alive.isEmpty, "still running: \(alive)")
        ferry.stop()
    }

    @Test func reloadWithABrokenConfigKeepsTheOldOneServing() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "badreload", workers: 1)
        defer { ferry.stop() }
        _ = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" } }
        let good = try String(contentsOfFile: ferry.configPath, encoding: .utf8)
        try (good + "\n[pool]\nmax_idle = 3\n").write(toFile: ferry.configPath, atomically: true, encoding: .utf8)
        let failed = try FerryBinary.run(["reload", "--socket", ferry.controlSocket])
        #expect(failed.status == 1)
        #expect(failed.stdout.contains("unknown key 'max_idle'"))
        let afterFailure = try status(ferry)
        #expect(afterFailure.generation == 1)
        #expect(afterFailure.lastReload?.ok == false)
        #expect(try get(ferry) == "200")
        try good.write(toFile: ferry.configPath, atomically: true, encoding: .utf8)
        let succeeded = try FerryBinary.run(["reload", "--socket", ferry.controlSocket])
        #expect(succeeded.status == 0, "\(succeeded.stdout)\(succeeded.stderr)")
        #expect(succeeded.stdout.contains("applied in place"), "no listener changed: no new workers")
        #expect(try status(ferry).generation == 1)
        #expect(try get(ferry) == "200")
    }

    /// Reload under load: continuous HTTPS requests and an open WebSocket while the master gets
    /// twenty reloads with new workers (one with a broken config). Zero failed requests; the WebSocket of the old
    /// generation is closed with 1001 when its graceful timeout runs out.
    @Test func reloadsUnderLoadLoseNoRequest() throws {
        guard Tool.pythonWebSocketsAvailable() else { return }
        let ferry = try ServeEndToEndTests.startSeed(name: "reloadload", workers: 2)
        defer { ferry.stop() }
        try reloadUnderLoad(ferry)
    }

    /// The same through systemd socket activation: workers of both generations accept on the one
    /// shared socket from their acceptor threads; a draining worker's thread must stop before it
    /// says so, or a connection it accepts after is closed unanswered.
    @Test func reloadsUnderLoadThroughSocketActivationLoseNoRequest() throws {
        guard Tool.path("python3") != nil, Tool.pythonHas("websockets"), Tool.path("systemd-socket-activate") != nil
        else {
            print("skipped: python3 with websockets or systemd-socket-activate is not installed")
            return
        }
        let ferry = try ServeEndToEndTests.startSeed(name: "reloadsd", workers: 2, socketActivated: true)
        defer { ferry.stop() }
        try reloadUnderLoad(ferry)
    }

    /// Twenty reloads with new workers, each awaited through status, the eighth with a broken configuration, while
    /// load_during_reloads.py runs: zero failed requests, the old generation's WebSocket closed with
    /// 1001, no worker crash.
    func reloadUnderLoad(_ ferry: FerryInstance) throws {
        let python = try #require(Tool.path("python3"))
        _ = try waitFor(ferry) { $0.workers.filter { $0.state == "ready" }.count == 2 }
        let good = try String(contentsOfFile: ferry.configPath, encoding: .utf8)
        let load = Process()
        load.executableURL = URL(fileURLWithPath: python)
        load.arguments = [
            ServeEndToEndTests.scripts.appendingPathComponent("load_during_reloads.py").path, String(ferry.httpsPort),
            ferry.certificatePath, "10",
        ]
        let output = Pipe()
        load.standardOutput = output
        try load.run()
        Thread.sleep(forTimeInterval: 1)
        // Twenty reloads, each awaited through status; the eighth with a broken configuration.
        var outcomes: [Bool] = []
        for index in 0..<20 {
            let before = try status(ferry)
            if index == 7 {
                try (good + "\n[limits]\nmax_header_bytes = \"lots\"\n").write(
                    toFile: ferry.configPath, atomically: true, encoding: .utf8)
            }
            // The new-generation path, which routine changes no longer take (they are applied in
            // place: ReloadInPlaceEndToEndTests): `--restart-workers`, not waited for here.
            let reload = Process()
            reload.executableURL = FerryBinary.url
            reload.arguments = ["reload", "--restart-workers", "--socket", ferry.controlSocket]
            reload.standardOutput = FileHandle.nullDevice
            try reload.run()
            let after = try waitFor(ferry, timeout: 10) { current in
                current.generation != before.generation
                    || (current.lastReload?.ok == false && current.lastReload?.message != before.lastReload?.message)
                    || (current.lastReload?.ok == false && before.lastReload?.ok != false)
            }
            outcomes.append(after.generation != before.generation)
            if index == 7 { try good.write(toFile: ferry.configPath, atomically: true, encoding: .utf8) }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let results = outcomes.map { $0 ? Int32(0) : Int32(1) }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        load.waitUntilExit()
        let report = String(decoding: data, as: UTF8.self)
        print(
            "reload under load: \(report.trimmingCharacters(in: .whitespacesAndNewlines)); reload exit codes \(results)"
        )
        struct Report: Decodable {
            var requests: Int
            var failures: Int
            var ws_messages: Int
            var ws_close_code: Int?
        }
        let parsed = try JSONDecoder().decode(Report.self, from: Data(report.utf8))
        #expect(results.filter { $0 == 1 }.count == 1)
        #expect(results.filter { $0 == 0 }.count == 19)
        #expect(try status(ferry).generation == 20)
        #expect(parsed.failures == 0, "\(report)")
        #expect(parsed.requests > 50)
        #expect(parsed.ws_messages > 3)
        #expect(
            parsed.ws_close_code == 1001,
            "\(report)\n\(ferry.log().split(separator: "\n").suffix(40).joined(separator: "\n"))")
        // No worker of any generation may crash: before the accept handover, old and new workers
        // accepted on one socket and debug builds died on SwiftNIO's spurious-wake-up assertion
        // (7–11 crashes and 18–20 lost connections per 40 reloads under connection churn).
        let log = ferry.log()
        #expect(!log.contains("Assertion failed") && !log.contains("crashed") && !log.contains("worker died"))
    }

    /// A reload to fewer workers closes the surplus slots' SO_REUSEPORT sockets: before, they stayed
    /// bound with nobody accepting, and about a third of new connections (3 → 2 workers) hung.
    @Test func reloadToFewerWorkersLeavesNoSocketUnserved() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "shrink", workers: 3)
        defer { ferry.stop() }
        _ = try waitFor(ferry) { $0.workers.filter { $0.state == "ready" && $0.accepting == true }.count == 3 }
        let config = try String(contentsOfFile: ferry.configPath, encoding: .utf8)
        #expect(config.contains("workers = 3"))
        try config.replacing("workers = 3", with: "workers = 2").write(
            toFile: ferry.configPath, atomically: true, encoding: .utf8)
        kill(ferry.process.processIdentifier, SIGHUP)
        _ = try waitFor(ferry, timeout: 20) {
            $0.generation == 2 && $0.workers.count == 2 && $0.workers.allSatisfy { $0.accepting == true }
        }
        var codes: [String: Int] = [:]
        for _ in 0..<30 { codes[try get(ferry, maxTime: 2), default: 0] += 1 }
        #expect(codes == ["200": 30], "\(codes)")
    }

    @Test func socketActivationWithReadinessNotifications() throws {
        guard let python = Tool.path("python3"), Tool.path("systemd-socket-activate") != nil else {
            print("skipped: systemd-socket-activate is not installed")
            return
        }
        let ttsPort = try FreePort.pick()
        let filesPort = try FreePort.pick()
        let port = try FreePort.pick()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-sd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = ServeEndToEndTests.seedConfig(
            directory: directory, httpsPort: port, ttsPort: ttsPort, filesPort: filesPort, workers: 2
        ).replacing("address = \"127.0.0.1:\(port)\"", with: "address = \"systemd:https\"")
        let configPath = directory.appendingPathComponent("ferry.toml").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        // The certificate is generated at start; the script waits for READY=1 before using it.
        let result = try Tool.run(
            python,
            [
                ServeEndToEndTests.scripts.appendingPathComponent("socket_activation.py").path, FerryBinary.url.path,
                configPath, String(port), directory.appendingPathComponent("state/tls/selfsigned.crt").path,
            ], timeout: 90)
        struct Report: Decodable {
            var statuses: [Int]
            var messages: [String]
            var exit: Int?
            var log_tail: String
        }
        guard let report = try? JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8)) else {
            Issue.record("socket activation script failed: \(result.stdout)\n\(result.stderr)")
            return
        }
        #expect(report.statuses == [200, 200, 200, 200], "\(report.log_tail)")
        let all = report.messages.joined(separator: "\n")
        #expect(all.contains("READY=1"))
        #expect(all.contains("RELOADING=1"))
        #expect(all.contains("MONOTONIC_USEC="))
        #expect(all.contains("STOPPING=1"))
        #expect(all.contains("STATUS=generation"))
        #expect(report.exit == 0)
    }

    @Test func workersAndBuiltinBackendsDropToTheConfiguredUser() throws {
        // The command backend runs the system python3: nobody cannot read root's pyenv.
        guard getuid() == 0, getpwnam("nobody") != nil, getgrnam("nogroup") != nil,
            let python = Tool.path("python3"), Tool.pythonHas("websockets"),
            FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
        else {
            print("skipped: needs root, the nobody user, /usr/bin/python3 and python3 websockets")
            return
        }
        let ttsPort = try FreePort.pick()
        let filesPort = try FreePort.pick()
        let appPort = try FreePort.pick()
        let ferry = try FerryInstance(name: "dropuser") { directory, port in
            ServeEndToEndTests.seedConfig(
                directory: directory, httpsPort: port, ttsPort: ttsPort, filesPort: filesPort, workers: 1
            ).replacing("workers = 1", with: "workers = 1\nuser = \"nobody\"\ngroup = \"nogroup\"")
                + """

                [[backend]]
                name = "app"
                command = ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "\(appPort)"]
                cwd = "/tmp"
                address = "127.0.0.1:\(appPort)"

                """
        }
        defer { ferry.stop() }
        chmod(ferry.directory.path, 0o755)
        let current = try waitFor(ferry) { status in
            status.workers.contains { $0.state == "ready" } && status.backends.allSatisfy { $0.state == "ready" }
        }
        let nobody = getpwnam("nobody")!.pointee.pw_uid
        for pid in current.workers.map(\.pid) + current.backends.compactMap(\.pid) {
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst()
                .first
            #expect(uid.flatMap { UInt32($0) } == nobody, "pid \(pid) runs as \(String(describing: uid))")
        }
        #expect(current.backends.count == 3, "the command backend is supervised too")
        #expect(getuid() == 0 && kill(current.masterPID, 0) == 0)
        let result = try Tool.run(
            python,
            [
                ServeEndToEndTests.scripts.appendingPathComponent("tts_roundtrip.py").path, String(ferry.httpsPort),
                ferry.certificatePath, "1",
            ])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    @Test func logFileIsWrittenAndReopenedOnSIGUSR1() throws {
        let ttsPort = try FreePort.pick()
        let filesPort = try FreePort.pick()
        var logPath = ""
        let ferry = try FerryInstance(name: "logfile") { directory, port in
            logPath = directory.appendingPathComponent("ferry-file.log").path
            return ServeEndToEndTests.seedConfig(
                directory: directory, httpsPort: port, ttsPort: ttsPort, filesPort: filesPort, workers: 1
            ).replacing("workers = 1", with: "workers = 1\nlog_file = \"\(logPath)\"")
        }
        defer { ferry.stop() }
        _ = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" } }
        let first = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(first.contains("master started"))
        // logrotate: move the file away, then SIGUSR1; new lines go to a new file at the same path.
        try FileManager.default.moveItem(atPath: logPath, toPath: logPath + ".1")
        kill(ferry.process.processIdentifier, SIGUSR1)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(try get(ferry, "/") == "200")
        Thread.sleep(forTimeInterval: 0.5)
        let second = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(second.contains("log file reopened"))
        // curl negotiates h2 (ALPN offers it by default).
        #expect(second.contains("\"GET / HTTP/2.0\" 200"), "the worker's access log follows the rotation: \(second)")
        #expect(try status(ferry).workers.contains { $0.state == "ready" }, "SIGUSR1 must not kill a worker")
    }

    /// At its descriptor limit a worker stops accepting (connections wait in the backlog), keeps
    /// serving the ones it has, says so in its log and status, and accepts again once some close.
    @Test func workerAtItsDescriptorLimitStopsAcceptingAndKeepsServing() throws {
        guard let prlimit = Tool.path("prlimit"), Tool.path("python3") != nil else {
            print("skipped: prlimit or python3 is missing")
            return
        }
        // 160 descriptors: 64 + 8 reserved, 88 for connections, so at most 44 clients (each may
        // need a backend connection too).
        let ferry = try ServeEndToEndTests.startSeed(
            name: "fdlimit", workers: 1, launcher: [prlimit, "--nofile=160:160", "--"])
        defer { ferry.stop() }
        try checkDescriptorLimit(ferry)
    }

    /// The same through systemd socket activation, where the worker accepts from a thread: it must
    /// stop at the limit too (it used to outrun the loop: 70 accepted for 44).
    @Test func socketActivatedWorkerAtItsDescriptorLimitStopsAcceptingAndKeepsServing() throws {
        guard let prlimit = Tool.path("prlimit"), Tool.path("python3") != nil,
            Tool.path("systemd-socket-activate") != nil
        else {
            print("skipped: prlimit, python3 or systemd-socket-activate is missing")
            return
        }
        let ferry = try ServeEndToEndTests.startSeed(
            name: "fdlimitsd", workers: 1, launcher: [prlimit, "--nofile=160:160", "--"], socketActivated: true)
        defer { ferry.stop() }
        try checkDescriptorLimit(ferry)
    }

    func checkDescriptorLimit(_ ferry: FerryInstance) throws {
        let python = try #require(Tool.path("python3"))
        _ = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" } }
        #expect(ferry.log().contains("max_connections_per_worker lowered"), "\(ferry.log())")
        let result = try Tool.run(
            python,
            [
                ServeEndToEndTests.scripts.appendingPathComponent("connection_limit.py").path, String(ferry.httpsPort),
                "70", "12",
            ],
            timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
        print("descriptor limit: \(result.stdout)")
        let first = report["first"] as? Int ?? -1
        #expect((40...50).contains(first), "accepted before pausing: \(report)")
        #expect(
            report["failed_first"] as? Int == 0, "connections beyond the limit wait, they are not dropped: \(report)")
        #expect((report["served_while_full"] as? String)?.hasPrefix("HTTP/1.1 200") == true, "\(report)")
        #expect((report["second"] as? Int ?? 0) >= 10, "accepting resumes after closes: \(report)")
        #expect(report["failed_second"] as? Int == 0, "\(report)")
        #expect(ferry.log().contains("connection limit reached"), "\(ferry.log())")
        let json = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket]).stdout
        let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
        let workers = document["workers"] as? [[String: Any]] ?? []
        let stats = workers.compactMap { $0["stats"] as? [String: Any] }
        #expect(
            stats.contains { ($0["acceptPauses"] as? Int ?? 0) >= 1 && $0["connectionLimit"] as? Int == 44 }, "\(json)")
        // The worker is still the same one, alive and serving.
        #expect(try get(ferry) == "200")
    }

    /// A draining worker that never says it stopped accepting (here: stopped with SIGSTOP) does not
    /// keep the new generation from serving: after 5 s the new worker accepts anyway.
    @Test func aHungOldWorkerLosesItsSlotAfterFiveSeconds() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "hung", workers: 1)
        defer { ferry.stop() }
        let before = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" && $0.accepting == true } }
        let old = try #require(before.workers.first?.pid)
        kill(old, SIGSTOP)
        defer { kill(old, SIGKILL) }
        // New workers on the same sockets (a routine reload would be applied in place, and the
        // stopped worker would never answer it).
        let reload = Process()
        reload.executableURL = FerryBinary.url
        reload.arguments = ["reload", "--restart-workers", "--socket", ferry.controlSocket]
        reload.standardOutput = FileHandle.nullDevice
        try reload.run()
        let waiting = try waitFor(ferry) { status in
            status.generation == 2 && status.workers.contains { $0.generation == 2 && $0.state == "ready" }
        }
        #expect(waiting.workers.first { $0.generation == 2 }?.accepting == false, "the old worker still holds the slot")
        let handed = try waitFor(ferry, timeout: 10) { status in
            status.workers.contains { $0.generation == 2 && $0.accepting == true }
        }
        #expect(handed.workers.contains { $0.pid == old && $0.accepting == false })
        #expect(try get(ferry, maxTime: 5) == "200")
        #expect(ferry.log().contains("did not stop accepting within 5 s"))
    }

    /// A TCP connect-and-close (port probe, health check) is no TLS error: status --json counts it
    /// as closed_before_client_hello, and the table's TLS ERRORS column leaves it out.
    @Test func portProbesAreNotTLSErrors() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "probes", workers: 1)
        defer { ferry.stop() }
        _ = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" } }
        for _ in 0..<3 { _ = FreePort.accepts(port: ferry.httpsPort) }
        var probes = 0
        let deadline = Date().addingTimeInterval(10)
        while probes < 3 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.3)
            let json = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket]).stdout
            let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
            let workers = document["workers"] as? [[String: Any]] ?? []
            let failures = workers.compactMap { ($0["stats"] as? [String: Any])?["tlsFailures"] as? [String: Int] }
            probes = failures.map { $0["closed_before_client_hello"] ?? 0 }.reduce(0, +)
            #expect(failures.allSatisfy { $0["unexpected_eof"] == nil }, "\(failures)")
        }
        #expect(probes >= 3)
        let table = try FerryBinary.run(["status", "--socket", ferry.controlSocket]).stdout
        let row = try #require(table.split(separator: "\n").first { $0.contains(" ready ") })
        #expect(row.split(separator: " ").last == "0", "\(table)")
    }

    /// SIGQUIT: workers and backends are killed at once and the master exits; their deaths are
    /// expected, not "worker died; respawning" (which it used to log).
    @Test func sigquitStopsAtOnceWithoutRespawning() throws {
        let ferry = try ServeEndToEndTests.startSeed(name: "quit", workers: 2)
        defer { ferry.stop() }
        _ = try waitFor(ferry) { $0.workers.filter { $0.state == "ready" }.count == 2 }
        kill(ferry.process.processIdentifier, SIGQUIT)
        let deadline = Date().addingTimeInterval(10)
        while ferry.process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(!ferry.process.isRunning)
        let log = ferry.log()
        #expect(log.contains("SIGQUIT: immediate stop"))
        #expect(!log.contains("respawning"), "\(log)")
    }

    /// Starts `hold_websocket.py` and returns once its WebSocket through Ferry is open.
    func holdWebSocket(_ ferry: FerryInstance, seconds: Int) throws -> (Process, Pipe) {
        let (holder, output, _) = try startScript(
            "hold_websocket.py", [String(ferry.httpsPort), ferry.certificatePath, String(seconds)], until: "open\n",
            ferry)
        return (holder, output)
    }

    /// Starts one of the Python scripts and returns once it has printed `line`, with its output and
    /// its standard input (closing that is how some scripts are told to go on).
    func startScript(_ script: String, _ arguments: [String], until line: String, _ ferry: FerryInstance) throws
        -> (Process, Pipe, Pipe)
    {
        let python = try #require(Tool.path("python3"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [ServeEndToEndTests.scripts.appendingPathComponent(script).path] + arguments
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        try process.run()
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains(line) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { throw E2EError("\(script) did not print \(line)\n\(ferry.log())") }
            seen.append(chunk)
        }
        return (process, output, input)
    }

    /// A process's resident set in bytes, from /proc.
    func residentBytes(_ pid: Int32) throws -> Int {
        let statm = try String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8)
        let fields = statm.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { throw E2EError("unreadable statm: \(statm)") }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// glibc keeps what a process frees in the middle of its heap: a worker that held 1,000 TLS
    /// connections (each with a proxied request) stayed as large after they closed as while it held
    /// them. The worker gives that memory back once its connections have released enough of it.
    /// (Fails with trimming off: 58.2 MB held, 58.6 MB after the close.)
    @Test func aWorkerGivesTheMemoryOfClosedConnectionsBack() throws {
        guard Tool.path("python3") != nil else {
            print("skipped: python3 is missing")
            return
        }
        let ferry = try ServeEndToEndTests.startSeed(name: "heap", workers: 1)
        defer { ferry.stop() }
        let worker = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" && $0.accepting == true } }
            .workers[0].pid
        #expect(try get(ferry) == "200")
        Thread.sleep(forTimeInterval: 1.5)
        let base = try residentBytes(worker)
        let (holder, output, input) = try startScript(
            "hold_connections.py", [String(ferry.httpsPort), "1000", "/"], until: "open 1000", ferry)
        let peak = try residentBytes(worker)
        try input.fileHandleForWriting.close()
        let closed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        holder.waitUntilExit()
        #expect(closed.contains("closed"))
        // The client closed without close_notify (a FIN): the worker closes its side at once, not
        // after the keep-alive timeout.
        var open = -1
        var deadline = Date().addingTimeInterval(10)
        while open != 0 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
            let json = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket]).stdout
            let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
            let workers = document["workers"] as? [[String: Any]] ?? []
            open = workers.compactMap { ($0["stats"] as? [String: Any])?["connectionsOpen"] as? Int }.reduce(0, +)
        }
        #expect(open == 0, "connections the client closed are still open in the worker")
        // The trim runs on the first quiet 250 ms tick after the connections' release was counted.
        var now = try residentBytes(worker)
        deadline = Date().addingTimeInterval(5)
        while now - base > (peak - base) / 3 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
            now = try residentBytes(worker)
        }
        print("worker RSS: base \(base >> 10) KiB, 1,000 held \(peak >> 10) KiB, closed \(now >> 10) KiB")
        #expect(peak - base > 8 << 20, "1,000 connections should have grown the worker (base \(base), peak \(peak))")
        #expect(
            now - base <= (peak - base) / 3,
            "RSS after close: base \(base), peak \(peak), after \(now)")
        #expect(try get(ferry) == "200")
    }

    func closeCode(_ holder: (Process, Pipe)) throws -> Int? {
        let data = holder.1.fileHandleForReading.readDataToEndOfFile()
        holder.0.waitUntilExit()
        struct Held: Decodable { var close_code: Int? }
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        return try JSONDecoder().decode(Held.self, from: Data(line.utf8)).close_code
    }

    /// systemd's default KillMode (control-group) sends SIGTERM to every process of the unit at
    /// once, a terminal's Ctrl-C sends SIGINT to the whole group: the workers must drain with the
    /// master, not die on their own signal (an open WebSocket then ends with 1001, not a dead
    /// connection), and no worker is respawned or replaced on the way out.
    @Test func aStopSignalToEveryProcessDrainsLikeOneToTheMaster() throws {
        guard Tool.pythonWebSocketsAvailable() else { return }
        for signal in [SIGTERM, SIGINT] {
            let ferry = try ServeEndToEndTests.startSeed(name: "groupstop", workers: 2)
            defer { ferry.stop() }
            let ready = try waitFor(ferry) { $0.workers.filter { $0.state == "ready" }.count == 2 }
            let holder = try holdWebSocket(ferry, seconds: 15)
            kill(ferry.process.processIdentifier, signal)
            for worker in ready.workers { kill(worker.pid, signal) }
            let code = try closeCode(holder)
            let deadline = Date().addingTimeInterval(15)
            while ferry.process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            #expect(!ferry.process.isRunning, "Ferry did not stop after signal \(signal)")
            #expect(code == 1001, "signal \(signal): close code \(String(describing: code))\n\(ferry.log())")
            let log = ferry.log()
            #expect(!log.contains("respawning") && !log.contains("replacement"), "\(log)")
        }
    }

    /// SIGTERM to one worker (an operator restarting it) is a graceful restart of that worker: its
    /// replacement starts, takes over the slot, and the old one drains (its WebSocket gets 1001);
    /// requests keep being answered throughout.
    @Test func aStopSignalToOneWorkerReplacesItGracefully() throws {
        guard Tool.pythonWebSocketsAvailable() else { return }
        let ferry = try ServeEndToEndTests.startSeed(name: "workerstop", workers: 1)
        defer { ferry.stop() }
        let before = try waitFor(ferry) { $0.workers.contains { $0.state == "ready" && $0.accepting == true } }
        let victim = before.workers[0].pid
        let holder = try holdWebSocket(ferry, seconds: 15)
        kill(victim, SIGTERM)
        var answers: [String] = []
        for _ in 0..<10 {
            answers.append(try get(ferry))
            Thread.sleep(forTimeInterval: 0.1)
        }
        let after = try waitFor(ferry) { status in
            !status.workers.contains { $0.pid == victim }
                && status.workers.contains { $0.pid != victim && $0.state == "ready" && $0.accepting == true }
        }
        #expect(after.workers.count == 1)
        #expect(answers.allSatisfy { $0 == "200" }, "\(answers)")
        #expect(try closeCode(holder) == 1001)
        #expect(try get(ferry) == "200")
        let log = ferry.log()
        #expect(log.contains("draining it once its replacement is ready"), "\(log)")
        #expect(!log.contains("respawning"), "\(log)")
    }

    @Test func controlSocketRefusesAnotherUser() throws {
        guard getuid() == 0, let setpriv = Tool.path("setpriv") else {
            print("skipped: needs root and setpriv to act as nobody")
            return
        }
        let ttsPort = try FreePort.pick()
        let filesPort = try FreePort.pick()
        let ferry = try FerryInstance(name: "peercred") { directory, port in
            // World-connectable, so the refusal comes from the SO_PEERCRED check, not the file mode.
            ServeEndToEndTests.seedConfig(
                directory: directory, httpsPort: port, ttsPort: ttsPort, filesPort: filesPort, workers: 1
            ).replacing("graceful_timeout = \"2s\"", with: "graceful_timeout = \"2s\"\ncontrol_socket_mode = \"0666\"")
        }
        defer { ferry.stop() }
        chmod(ferry.directory.path, 0o755)
        chmod(ferry.stateDirectory, 0o755)
        let refused = try Tool.run(
            setpriv,
            [
                "--reuid=nobody", "--regid=nogroup", "--clear-groups", FerryBinary.url.path, "status", "--socket",
                ferry.controlSocket,
            ])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("permission denied"), "\(refused.stdout)\(refused.stderr)")
        #expect(try FerryBinary.run(["status", "--socket", ferry.controlSocket]).status == 0)
    }

    func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? false
    }
}
