import FerryConfig
import Logging
import NIOCore

/// The servers of backends with several: `ferry server drain|enable`, and their rows in the status
/// document (state for new work, what the workers carry there).
extension Master {
    /// `server-drain` / `server-enable` with [backend, server (, deadline seconds)]: the server is
    /// the address as in the file, or its 1-based position. With a deadline, the WebSockets the
    /// server still has then get 1001 and close (if it is still draining).
    func setServerDraining(_ arguments: [String], draining: Bool) -> ControlResponse {
        guard arguments.count == 2 || (draining && arguments.count == 3 && Int(arguments[2]) != nil) else {
            return ControlResponse(
                ok: false,
                message: "usage: ferry server drain BACKEND SERVER [--deadline SECONDS] | enable BACKEND SERVER")
        }
        guard let backend = configuration.backend(named: arguments[0]) else {
            let names = configuration.backends.map(\.name).joined(separator: ", ")
            return ControlResponse(ok: false, message: "no backend named '\(arguments[0])' (known: \(names))")
        }
        let index =
            backend.servers.firstIndex { $0.address.description == arguments[1] }
            ?? Int(arguments[1]).flatMap { backend.servers.indices.contains($0 - 1) ? $0 - 1 : nil }
        guard let index else {
            let addresses = backend.servers.map(\.address.description).joined(separator: ", ")
            return ControlResponse(
                ok: false, message: "backend \(backend.name) has no server '\(arguments[1])' (servers: \(addresses))")
        }
        let address = backend.servers[index].address
        if draining {
            drainedServers[backend.name, default: []].insert(address)
        } else {
            drainedServers[backend.name]?.remove(address)
        }
        for (pid, record) in workers where record.generation == generation {
            send(.serverDraining(backend: backend.name, server: index, draining: draining), to: pid)
        }
        logger.notice(
            draining ? "server draining: no new requests or WebSockets" : "server enabled",
            metadata: ["backend": "\(backend.name)", "server": "\(address)"])
        if draining, arguments.count == 3, let seconds = Int(arguments[2]) {
            let master = self
            let name = backend.name
            loop.scheduleTask(in: .seconds(Int64(seconds))) {
                guard master.drainedServers[name]?.contains(address) == true,
                    let index = master.configuration.backend(named: name)?.servers.firstIndex(where: {
                        $0.address == address
                    })
                else { return }
                master.logger.notice(
                    "drain deadline: closing the server's WebSockets with 1001",
                    metadata: ["backend": "\(name)", "server": "\(address)"])
                for (pid, record) in master.workers where record.generation == master.generation {
                    master.send(.closeServerTunnels(backend: name, server: index), to: pid)
                }
            }
        }
        return ControlResponse(
            ok: true,
            message: draining
                ? "server \(address) of backend \(backend.name) is draining: no new requests or WebSockets; "
                    + "what it has open finishes"
                : "server \(address) of backend \(backend.name) takes new requests again")
    }

    /// Drained servers as (backend, index) in the current configuration, for a starting worker.
    var drainingIndexes: [(String, Int)] {
        configuration.backends.flatMap { backend in
            backend.servers.indices.filter {
                drainedServers[backend.name]?.contains(backend.servers[$0].address) == true
            }
            .map { (backend.name, $0) }
        }
    }

    /// A row per server of every backend with several, from the current generation's pool stats.
    func serverRows(pools: [PoolStats]) -> [StatusDocument.Server]? {
        let health = healthChecks?.statusRows ?? []
        let rows = configuration.backends.filter { $0.servers.count > 1 }.flatMap { backend in
            backend.servers.enumerated().map { index, server -> StatusDocument.Server in
                let address = server.address.description
                let carried = pools.filter {
                    $0.backend == backend.name && $0.server == address && $0.protocol == "http"
                }
                var state = "up"
                if backend.instances > 1, let unit = backends["\(backend.name)/\(index + 1)"], unit.phase != .ready {
                    state = unit.phase.rawValue
                } else if health.first(where: { $0.backend == backend.name && $0.server == address })?.state == "down" {
                    state = "down"
                }
                if drainedServers[backend.name]?.contains(server.address) == true { state = "draining" }
                return StatusDocument.Server(
                    backend: backend.name, server: address, weight: server.weight, state: state,
                    active: carried.reduce(0) { $0 + ($1.active ?? 0) },
                    tunnels: carried.reduce(0) { $0 + ($1.tunnels ?? 0) },
                    retries: carried.reduce(0) { $0 + $1.retries })
            }
        }
        return rows.isEmpty ? nil : rows
    }
}
