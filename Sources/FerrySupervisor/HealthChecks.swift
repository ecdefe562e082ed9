import FerryConfig
import Foundation
import Logging
import NIOCore

/// Up or down from consecutive check results: `fall` failures in a row take an up server down,
/// `rise` successes in a row bring a down one up (HAProxy's and nginx's rule). Servers start up,
/// so a new configuration serves at once; the first `fall` failures take a dead one out.
struct HealthStateMachine: Equatable {
    enum Action: Equatable {
        case none
        case wentUp
        case wentDown
    }

    private(set) var isUp = true
    /// Results in a row that disagree with `isUp`.
    private var streak = 0

    mutating func record(healthy: Bool, rise: Int, fall: Int) -> Action {
        guard healthy != isUp else {
            streak = 0
            return .none
        }
        streak += 1
        guard streak >= (isUp ? fall : rise) else { return .none }
        isUp = healthy
        streak = 0
        return healthy ? .wentUp : .wentDown
    }
}

/// The master's active health checks: once per host (not per worker), each backend with a
/// `[backend.health]` table probed every `interval`; transitions are pushed to every worker.
/// Touched only on the master's loop, like the rest of the master's state (hence unchecked).
final class HealthChecks: @unchecked Sendable {
    struct Server {
        var address: BackendAddress
        var machine = HealthStateMachine()
        var lastCheck: Date?
        var latencyMilliseconds: Double?
        var lastResult = "not checked yet"
    }

    struct Backend {
        var settings: HealthCheckSettings
        var servers: [Server]
        var task: RepeatedTask?
    }

    private(set) var backends: [String: Backend] = [:]
    private unowned let master: Master

    init(master: Master) {
        self.master = master
    }

    /// Starts (or, after a reload, restarts) the checks of `configuration`; a server kept with the
    /// same address and settings keeps its state.
    func apply(_ configuration: FerryConfiguration) {
        var next: [String: Backend] = [:]
        for backend in configuration.backends {
            guard let settings = backend.health else { continue }
            let old = backends[backend.name]
            let servers = backend.servers.map { server -> Server in
                if let old, old.settings == settings,
                    let kept = old.servers.first(where: { $0.address == server.address })
                {
                    return kept
                }
                return Server(address: server.address)
            }
            next[backend.name] = Backend(settings: settings, servers: servers, task: nil)
        }
        for (_, old) in backends { old.task?.cancel() }
        backends = next
        for name in backends.keys { schedule(name) }
    }

    func stop() {
        for (_, backend) in backends { backend.task?.cancel() }
    }

    /// The servers the checks say are down: for a worker that starts after they went down.
    var downServers: [(backend: String, server: Int)] {
        backends.flatMap { name, backend in
            backend.servers.indices.filter { !backend.servers[$0].machine.isUp }.map { (name, $0) }
        }
    }

    private func schedule(_ name: String) {
        guard let backend = backends[name] else { return }
        let interval = TimeAmount.milliseconds(backend.settings.interval.wholeMilliseconds)
        let checks = self
        backends[name]?.task = master.loop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { _ in
            checks.checkAll(name)
        }
    }

    private func checkAll(_ name: String) {
        guard let backend = backends[name] else { return }
        let settings = backend.settings
        for (index, server) in backend.servers.enumerated() {
            let started = ContinuousClock.now
            let checks = self
            ServerProbe.probe(
                server.address, path: settings.path, host: settings.host,
                timeout: .milliseconds(settings.timeout.wholeMilliseconds), on: master.loop
            ).whenSuccess { result in
                let took = ContinuousClock.now - started
                checks.record(
                    name, server: index, address: server.address, result: result,
                    milliseconds: Double(took.components.attoseconds) / 1e15 + Double(took.components.seconds) * 1000)
            }
        }
    }

    private func record(
        _ name: String, server index: Int, address: BackendAddress, result: ServerProbe.Result, milliseconds: Double
    ) {
        guard var backend = backends[name], backend.servers.indices.contains(index),
            backend.servers[index].address == address
        else { return }
        let healthy: Bool
        var server = backend.servers[index]
        switch result {
        case .connected:
            healthy = true
            server.lastResult = "connected"
        case .status(let code):
            healthy = backend.settings.isHealthy(status: code)
            server.lastResult = "HTTP \(code)"
        case .failed(let reason):
            healthy = false
            server.lastResult = reason
        }
        server.lastCheck = Date()
        server.latencyMilliseconds = healthy ? milliseconds : nil
        let action = server.machine.record(healthy: healthy, rise: backend.settings.rise, fall: backend.settings.fall)
        backend.servers[index] = server
        backends[name] = backend
        guard action != .none else { return }
        let up = action == .wentUp
        let metadata: Logger.Metadata = [
            "backend": "\(name)", "server": "\(address)", "last": "\(server.lastResult)",
        ]
        if up {
            master.logger.notice("server is healthy again", metadata: metadata)
        } else {
            master.logger.error("server failed its health checks; out of rotation", metadata: metadata)
        }
        master.broadcast(.health(backend: name, server: index, healthy: up))
    }

    /// Rows for the status document.
    var statusRows: [StatusDocument.ServerHealth] {
        backends.keys.sorted().flatMap { name in
            backends[name]!.servers.map { server in
                StatusDocument.ServerHealth(
                    backend: name, server: server.address.description, state: server.machine.isUp ? "up" : "down",
                    lastCheck: server.lastCheck?.timeIntervalSince1970, latencyMilliseconds: server.latencyMilliseconds,
                    lastResult: server.lastResult)
            }
        }
    }
}
