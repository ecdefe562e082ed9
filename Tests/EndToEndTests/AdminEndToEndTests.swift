import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 20: the status page, its JSON, `ferry top`, and who may see them.
@Suite(.serialized) struct AdminEndToEndTests {
    static let scripts = ServeEndToEndTests.scripts

    /// The seed layout plus backend `app` (a Python server that cannot start again once `flag`
    /// exists) on /app/, `[admin]` on `adminPort`, and a graceful timeout long enough to watch a
    /// generation drain.
    static func start(name: String, adminPort: Int, flag: String) throws -> FerryInstance {
        let ttsPort = try FreePort.pick()
        let filesPort = try FreePort.pick()
        let appPort = try FreePort.pick()
        let ferry = try FerryInstance(name: name) { directory, port in
            ServeEndToEndTests.seedConfig(
                directory: directory, httpsPort: port, ttsPort: ttsPort, filesPort: filesPort, workers: 1,
                standby: false
            ).replacing("graceful_timeout = \"2s\"", with: "graceful_timeout = \"20s\"")
                + """
                [[backend]]
                name = "app"
                command = ["python3", "\(scripts.appendingPathComponent("named_backend.py").path)", "\(appPort)", "app", "\(flag)"]
                address = "127.0.0.1:\(appPort)"

                [[route]]
                path = "/app/"
                backend = "app"
                protocol = "http"

                [admin]
                listen = "127.0.0.1:\(adminPort)"
                """
        }
        try ferry.waitUntilAccepting(port: appPort, timeout: 30)
        try ferry.waitUntilAccepting(port: adminPort, timeout: 10)
        return ferry
    }

    static func get(_ url: String, _ extra: [String] = []) throws -> (code: String, body: String) {
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        let result = try Tool.run(curl, ["-s", "--max-time", "5", "-w", "\n%{http_code}"] + extra + [url])
        let parts = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(parts.last ?? ""), parts.dropLast().joined(separator: "\n"))
    }

    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    @Test func pageJSONHistoryAndTopUnderLoadThenAKilledBackendAndADrainingGenerationInChromium() throws {
        guard let python = Tool.path("python3") else { throw E2EError("python3 is not installed") }
        let adminPort = try FreePort.pick()
        let flag = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-flag-\(UUID())").path
        defer { unlink(flag) }
        let ferry = try Self.start(name: "admin", adminPort: adminPort, flag: flag)
        defer { ferry.stop() }
        let admin = "http://127.0.0.1:\(adminPort)"
        let load = Process()
        load.executableURL = URL(fileURLWithPath: python)
        load.arguments = [
            Self.scripts.appendingPathComponent("steady_gets.py").path, "\(ferry.httpsPort)", "/app/", "45", "4",
        ]
        load.standardOutput = FileHandle.nullDevice
        try load.run()
        defer { if load.isRunning { kill(load.processIdentifier, SIGKILL) } }
        Thread.sleep(forTimeInterval: 3.5)

        // The JSON: the document `ferry status --json` prints, with rates, certificates and events.
        let status = try Self.get("\(admin)/status.json")
        #expect(status.code == "200")
        let document = Self.json(status.body)
        #expect(document["masterPID"] as? Int == Int(ferry.process.processIdentifier))
        for key in ["workers", "backends", "pools", "generation", "certificates", "events", "latest"] {
            #expect(document[key] != nil, "status.json lacks \(key)")
        }
        let latestRoutes = (document["latest"] as? [String: Any])?["routes"] as? [[String: Any]] ?? []
        let appRate = latestRoutes.first { $0["path"] as? String == "/app/" }?["requests"] as? Double ?? 0
        #expect(appRate > 0, "\(latestRoutes)")
        let certificate = (document["certificates"] as? [[String: Any]])?.first
        #expect(certificate?["source"] as? String == "self-signed")
        #expect((certificate?["daysLeft"] as? Double ?? 0) > 300)
        #expect(
            (document["events"] as? [[String: Any]])?.contains {
                ($0["message"] as? String)?.contains("worker ready") == true
            } == true)
        // The history: a sample a second since the start; `since` returns only newer ones.
        let history = Self.json(try Self.get("\(admin)/history.json?since=0").body)
        let samples = history["samples"] as? [[String: Any]] ?? []
        #expect(samples.count >= 2)
        #expect(history["capacity"] as? Int == 600)
        let last = samples.last?["t"] as? Double ?? 0
        let newer = Self.json(try Self.get("\(admin)/history.json?since=\(last)").body)["samples"] as? [[String: Any]]
        // Only samples from `last` on (a second or two may pass between the requests; `>=`:
        // the decimal round trip of `t` may land a hair below it).
        #expect(newer != nil && newer!.allSatisfy { ($0["t"] as? Double ?? 0) >= last })
        #expect((newer?.count ?? 99) < samples.count)
        // The page itself, self-contained.
        let page = try Self.get("\(admin)/")
        #expect(page.code == "200" && page.body.contains("<title>Ferry</title>"))
        for external in ["src=\"http", "href=\"http", "url(http", "@import", "fetch('http", "fetch(\"http"] {
            #expect(!page.body.contains(external), "no external resource: \(external)")
        }
        #expect(try Self.get("\(admin)/ready").code == "200")
        #expect(try Self.get("\(admin)/nothing").code == "404")

        // `ferry top` in a terminal (tmux), then without one.
        if let tmux = Tool.path("tmux") {
            // A tmux server of the test's own (its socket in the test's directory). Started through
            // Python, whose subprocess closes every inherited descriptor: Foundation's Process
            // learns that a child exited when a socket the child inherited reaches EOF, and the
            // tmux server a client forks would keep it open for good (the test hung).
            let socket = ferry.directory.appendingPathComponent("tmux.sock").path
            func tmuxCommand(_ arguments: [String]) throws -> Int32 {
                let quiet =
                    "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))"
                return try Tool.run(python, ["-c", quiet, tmux, "-S", socket] + arguments).status
            }
            _ = try tmuxCommand([
                "new-session", "-d", "-s", "top", "-x", "160", "-y", "50",
                "\(FerryBinary.url.path) top --socket \(ferry.controlSocket)",
            ])
            defer { _ = try? tmuxCommand(["kill-server"]) }
            Thread.sleep(forTimeInterval: 2.5)
            let screen = try Tool.run(tmux, ["-S", socket, "capture-pane", "-p", "-t", "top"]).stdout
            let appLine = screen.split(separator: "\n").first { $0.hasPrefix("/app/") } ?? ""
            let shownRate = appLine.split(separator: " ").compactMap { Double($0) }.first ?? 0
            #expect(shownRate > 0, "ferry top shows /app/'s rate: \(screen)")
            #expect(screen.contains("ferry top"))
            _ = try tmuxCommand(["send-keys", "-t", "top", "q"])
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline, try tmuxCommand(["has-session", "-t", "top"]) == 0 {
                Thread.sleep(forTimeInterval: 0.1)
            }
            #expect(try tmuxCommand(["has-session", "-t", "top"]) != 0, "q quits")
        } else {
            Issue.record("tmux is not installed (scripts/install-deps.sh test installs it)")
        }
        let piped = try Tool.run(FerryBinary.url.path, ["top", "--socket", ferry.controlSocket])
        #expect(piped.stdout.contains("WORKER PID"), "not a terminal: ferry status once")

        // Headless Chromium: rates, a killed backend, a draining generation; a screenshot to review.
        guard Tool.pythonHas("selenium"), Tool.path("chromium") != nil || Tool.path("chromium-browser") != nil,
            Tool.path("chromedriver") != nil
        else {
            Issue.record("chromium, chromium-driver and python3 selenium are needed (scripts/install-deps.sh test)")
            return
        }
        let artifacts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("artifacts")
        try FileManager.default.createDirectory(at: artifacts, withIntermediateDirectories: true)
        let screenshot = artifacts.appendingPathComponent("status-page.png").path
        let browser = try Tool.run(
            python,
            [
                URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
                    "browser/status_page_test.py"
                ).path, "\(admin)/", screenshot, FerryBinary.url.path, ferry.controlSocket, flag,
                "\(ferry.httpsPort)", ferry.certificatePath,
                Self.scripts.appendingPathComponent("hold_websocket.py").path,
            ], timeout: 150)
        print("status page: \(browser.stdout)")
        let result = Self.json(browser.stdout)
        #expect(browser.status == 0, "\(browser.stdout)\n\(browser.stderr)")
        #expect((result["app_rps"] as? Double ?? 0) > 0)
        #expect(result["app_state_after_kill"] as? String != nil)
        #expect(result["draining_generation"] as? String == "1")
        #expect((result["connections_left"] as? Int ?? 0) >= 1)
        #expect(FileManager.default.fileExists(atPath: screenshot))
    }

    /// Clients not on loopback: 401 without the configured credentials, the data with them; 403
    /// when no credentials are configured; /ready and /live open to probes. The client is in a
    /// network namespace this test makes (a veth pair to the test's own namespace).
    @Test(
        .enabled(
            if: FleetEndToEndTests.namespacesPermitted,
            "skipped: network namespaces cannot be made here (`ip netns add` failed: needs root or CAP_SYS_ADMIN)")
    )
    func clientsNotOnLoopbackNeedCredentials() throws {
        guard let ip = Tool.path("ip"), let curl = Tool.path("curl") else { throw E2EError("ip and curl are needed") }
        let tag = getpid() % 10000
        let namespace = "fadm\(tag)"
        let subnet = "10.79.\(tag % 250)"
        _ = try Tool.run(ip, ["netns", "add", namespace])
        defer { _ = try? Tool.run(ip, ["netns", "del", namespace]) }
        _ = try Tool.run(
            ip, ["link", "add", "fadm\(tag)a", "type", "veth", "peer", "name", "eth0", "netns", namespace])
        defer { _ = try? Tool.run(ip, ["link", "del", "fadm\(tag)a"]) }
        _ = try Tool.run(ip, ["addr", "add", "\(subnet).1/30", "dev", "fadm\(tag)a"])
        _ = try Tool.run(ip, ["link", "set", "fadm\(tag)a", "up"])
        _ = try Tool.run(ip, ["-n", namespace, "addr", "add", "\(subnet).2/30", "dev", "eth0"])
        _ = try Tool.run(ip, ["-n", namespace, "link", "set", "eth0", "up"])
        func fromOutside(_ port: Int, _ path: String, _ extra: [String] = []) throws -> String {
            try Tool.run(
                ip,
                ["netns", "exec", namespace, curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]
                    + extra + ["http://\(subnet).1:\(port)\(path)"]
            ).stdout
        }
        // sha256("s3cret")
        let digest = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
        for credentials in [true, false] {
            let adminPort = try FreePort.pick()
            let ferry = try FerryInstance(name: "admin-auth") { dir, port in
                FerryInstance.preamble(dir, port: port, workers: 1)
                    + """
                    [[route]]
                    path = "/"
                    respond = 204

                    [admin]
                    listen = "0.0.0.0:\(adminPort)"

                    """ + (credentials ? "user = \"ops\"\npassword_sha256 = \"\(digest)\"\n" : "")
            }
            defer { ferry.stop() }
            try ferry.waitUntilAccepting(port: adminPort, timeout: 10)
            if credentials {
                #expect(try fromOutside(adminPort, "/status.json") == "401")
                #expect(try fromOutside(adminPort, "/", ["-u", "ops:wrong"]) == "401")
                #expect(try fromOutside(adminPort, "/status.json", ["-u", "ops:s3cret"]) == "200")
                #expect(try fromOutside(adminPort, "/", ["-u", "ops:s3cret"]) == "200")
            } else {
                #expect(try fromOutside(adminPort, "/status.json") == "403")
                #expect(try fromOutside(adminPort, "/", ["-u", "ops:s3cret"]) == "403")
            }
            #expect(try fromOutside(adminPort, "/ready") == "200", "probes need no credentials")
            #expect(try fromOutside(adminPort, "/live") == "200")
            #expect(try Self.get("http://127.0.0.1:\(adminPort)/status.json").code == "200", "loopback is let in")
        }
    }
}
