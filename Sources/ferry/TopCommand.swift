import ArgumentParser
import FerryConfig
import FerrySupervisor
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `ferry top`: the status page's data in the terminal, refreshed every second; `q` quits. Not a
/// terminal (a pipe, a file): prints `ferry status` once.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Live view of a running master in the terminal (q quits).")
    @OptionGroup var target: ControlTarget
    @Option(help: "Seconds between refreshes.") var interval: Double = 1

    func validate() throws {
        guard interval >= 0.1 else { throw ValidationError("--interval must be at least 0.1") }
    }

    func run() throws {
        let path = try target.path()
        guard isatty(STDOUT_FILENO) == 1 else {
            let response = try ControlClient.send("status", socketPath: path)
            guard let status = response.status else { throw ExitCode(1) }
            print(StatusTable.render(status))
            return
        }
        Terminal.enter()
        defer { Terminal.leave() }
        while true {
            let screen: String
            do {
                let response = try ControlClient.send("status", socketPath: path)
                screen =
                    response.status.map { TopScreen.render($0, size: Terminal.size()) }
                    ?? "ferry top: \(response.message ?? "no status")"
            } catch {
                screen = "ferry top: master unreachable at \(path): \(error)\n(retrying; q quits)"
            }
            Terminal.draw(screen)
            if Terminal.waitForQuit(seconds: interval) { return }
        }
    }
}

/// Raw keyboard input on the alternate screen, restored on exit and on SIGINT/SIGTERM.
enum Terminal {
    nonisolated(unsafe) private static var saved = termios()
    nonisolated(unsafe) private static var raw = false

    static func enter() {
        if isatty(STDIN_FILENO) == 1, tcgetattr(STDIN_FILENO, &saved) == 0 {
            var settings = saved
            settings.c_lflag &= ~tcflag_t(ICANON | ECHO)
            tcsetattr(STDIN_FILENO, TCSANOW, &settings)
            raw = true
        }
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signal(number) { received in
                Terminal.leave()
                signal(received, SIG_DFL)
                raise(received)
            }
        }
        write("\u{1B}[?1049h\u{1B}[?25l")
    }

    static func leave() {
        if raw { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
        write("\u{1B}[?25h\u{1B}[?1049l")
    }

    static func draw(_ screen: String) {
        write("\u{1B}[H\u{1B}[2J" + screen.replacingOccurrences(of: "\n", with: "\r\n"))
    }

    /// Waits up to `seconds` for a key; true when it was `q` (or stdin closed).
    static func waitForQuit(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return false }
            var descriptor = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(left * 1000))
            guard ready > 0 else { continue }
            var byte: UInt8 = 0
            let count = read(STDIN_FILENO, &byte, 1)
            if count <= 0 { return isatty(STDIN_FILENO) == 1 ? false : true }
            if byte == UInt8(ascii: "q") || byte == UInt8(ascii: "Q") { return true }
        }
    }

    static func size() -> (rows: Int, columns: Int) {
        var window = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &window) == 0, window.ws_row > 0 else { return (24, 80) }
        return (Int(window.ws_row), Int(window.ws_col))
    }

    private static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    }
}

/// One screen of `ferry top`.
enum TopScreen {
    static let green = "\u{1B}[32m", amber = "\u{1B}[33m", red = "\u{1B}[31m", bold = "\u{1B}[1m"
    static let reset = "\u{1B}[0m"

    static func render(_ status: StatusDocument, size: (rows: Int, columns: Int)) -> String {
        var lines: [String] = []
        let uptime = Int(status.uptimeSeconds)
        lines.append(
            "\(bold)ferry top\(reset) — master \(status.masterPID), up \(uptime / 3600)h\(uptime / 60 % 60)m"
                + "\(uptime % 60)s, generation \(status.generation), \(status.configFile)   (q quits)")
        let latest = status.latest
        lines.append(
            "requests/s \(rate(latest?.requests))   5xx/s \(colour(latest?.errors ?? 0 > 0 ? red : green, rate(latest?.errors)))"
                + "   connections \(latest?.connections ?? 0)   WebSockets \(latest?.tunnels ?? 0)"
                + (latest == nil ? "   (rates need [admin] listen)" : ""))
        if let reload = status.lastReload {
            lines.append(
                "last reload: " + colour(reload.ok ? green : red, reload.ok ? "ok" : "FAILED") + " — "
                    + (reload.message.split(separator: "\n").first.map(String.init) ?? ""))
        }
        lines.append("")
        lines += StatusTable.table(
            ["ROUTE", "BACKEND", "REQ/S", "5XX/S"],
            (latest?.routes ?? []).map { [$0.path, $0.backend ?? "-", rate($0.requests), rate($0.errors)] })
        lines.append("")
        var generations: [Int: (workers: Int, connections: Int, draining: Bool)] = [:]
        for worker in status.workers {
            var entry = generations[worker.generation] ?? (0, 0, false)
            entry.workers += 1
            entry.connections += (worker.stats?.connectionsOpen ?? 0) + (worker.stats?.activeTunnels ?? 0)
            entry.draining = entry.draining || worker.state == "draining"
            generations[worker.generation] = entry
        }
        lines += StatusTable.table(
            ["WORKER", "GEN", "STATE", "CONNS", "WEBSOCKETS", "REQUESTS"],
            status.workers.map { worker in
                [
                    "\(worker.pid)", "\(worker.generation)", stateColour(worker.state),
                    "\(worker.stats?.connectionsOpen ?? 0)", "\(worker.stats?.activeTunnels ?? 0)",
                    "\(worker.stats?.requests ?? 0)",
                ]
            })
        for (generation, entry) in generations.sorted(by: { $0.key < $1.key }) where entry.draining {
            lines.append(colour(amber, "generation \(generation) draining: \(entry.connections) connections left"))
        }
        lines.append("")
        lines += StatusTable.table(
            ["BACKEND", "STATE", "RESTARTS", "REUSE", "CLOSED"],
            status.backends.map { backend in
                let pools = status.pools.filter { $0.backend == backend.name && $0.protocol == "http" }
                let opened = pools.map(\.opened).reduce(0, +)
                let reused = pools.map(\.reused).reduce(0, +)
                let closed = pools.flatMap { $0.closed }.reduce(into: [String: Int]()) {
                    $0[$1.key, default: 0] += $1.value
                }
                return [
                    backend.name, stateColour(backend.state), "\(backend.restarts)",
                    opened + reused == 0
                        ? "-" : String(format: "%.0f%%", Double(reused) * 100 / Double(opened + reused)),
                    closed.sorted { $0.value > $1.value }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
                ]
            })
        for certificate in status.certificates ?? [] {
            let days = String(format: "%.0f days left", certificate.daysLeft)
            lines.append(
                "certificate \(certificate.names.first ?? certificate.path) (\(certificate.source)): "
                    + colour(certificate.daysLeft < 7 ? red : certificate.daysLeft < 14 ? amber : green, days))
        }
        let room = size.rows - lines.count - 2
        if room > 1, let events = status.events, !events.isEmpty {
            lines.append("")
            for event in events.suffix(room - 1).reversed() {
                let time = StatusTable.date(event.at).dropFirst(11).prefix(5)
                lines.append("\(time) \(event.level) \(event.message)")
            }
        }
        return lines.prefix(size.rows - 1).map { clip($0, to: size.columns) }.joined(separator: "\n")
    }

    static func rate(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value >= 100 ? String(format: "%.0f", value) : String(format: "%.1f", value)
    }

    static func colour(_ code: String, _ text: String) -> String { code + text + reset }

    static func stateColour(_ state: String) -> String {
        switch state {
        case "ready", "external", "up", "standby": colour(green, state)
        case "starting", "draining", "backoff": colour(amber, state)
        default: colour(red, state)
        }
    }

    /// Cuts a line to the terminal's width, not counting colour codes.
    static func clip(_ line: String, to width: Int) -> String {
        var visible = 0
        var out = ""
        var escape = false
        for character in line {
            if character == "\u{1B}" { escape = true }
            if escape {
                out.append(character)
                if character == "m" { escape = false }
                continue
            }
            guard visible < width else { continue }
            out.append(character)
            visible += 1
        }
        return out + (line.contains("\u{1B}") ? reset : "")
    }
}
