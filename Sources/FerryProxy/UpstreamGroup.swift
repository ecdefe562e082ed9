import FerryConfig
import NIOCore
import NIOPosix

/// One backend as an event loop sees it: its servers, each with its own HTTP keep-alive pool and
/// its count of open tunnels, and the balancer that picks a server for each new request or tunnel.
///
/// A server's load is what this loop has in flight there: leased and connecting pooled connections
/// plus open tunnels. Pools stay per server and per protocol: the tunnel connector never touches a
/// pool, whichever server it connects to. Touched only on its event loop (hence unchecked).
final class UpstreamGroup: @unchecked Sendable {
    let backend: BackendConfiguration
    let pools: [HTTPConnectionPool]
    private(set) var tunnels: [Int]
    private var balancer: Balancer
    private(set) var health: [PassiveHealth]
    /// Instances the master reports as not ready (starting, restarting), and servers its active
    /// health checks took out: no new work.
    private(set) var down: [Bool]
    private(set) var unhealthy: [Bool]
    /// `ferry server drain`: no new work, whatever else (never picked, even as a last resort).
    private(set) var draining: [Bool]
    /// When each server last came back into rotation (slow start ramps from there).
    private var cameBack: [NIODeadline?]

    /// Passive health of one server (outlier detection, nginx's max_fails / fail_timeout): failures
    /// in a row eject it for a period that doubles with each ejection; a success resets both.
    struct PassiveHealth {
        var consecutiveFailures = 0
        var ejections = 0
        var ejectedUntil: NIODeadline?

        func isEjected(at now: NIODeadline) -> Bool { ejectedUntil.map { now < $0 } ?? false }
    }

    init(
        backend: BackendConfiguration, settings: PoolSettings, eventLoop: any EventLoop,
        reusePolicy: HTTPConnectionPool.ReusePolicy
    ) {
        self.backend = backend
        let labelled = backend.servers.count > 1
        pools = backend.servers.map { server in
            HTTPConnectionPool(
                backend: backend, server: server, label: labelled ? server.address.description : nil,
                settings: settings, eventLoop: eventLoop, reusePolicy: reusePolicy)
        }
        tunnels = Array(repeating: 0, count: backend.servers.count)
        health = Array(repeating: PassiveHealth(), count: backend.servers.count)
        down = Array(repeating: false, count: backend.servers.count)
        unhealthy = Array(repeating: false, count: backend.servers.count)
        draining = Array(repeating: false, count: backend.servers.count)
        cameBack = Array(repeating: nil, count: backend.servers.count)
        balancer = Balancer(
            policy: backend.balance, weights: backend.servers.map(\.weight),
            names: backend.servers.map(\.address.description))
    }

    var loads: [Int] { pools.indices.map { pools[$0].inFlight + tunnels[$0] } }

    /// The server for a new request or tunnel (`key`: the hash policy's key, if any), among those
    /// not ejected and not in `excluding` (the ones a retried request already failed on). When every
    /// server is ejected, the ejections are ignored: a request still tries (and the queue retries)
    /// rather than failing at once. nil only when every server is excluded.
    ///   - preferred: a sticky cookie's server, taken when it may take new work.
    func pick(key: String?, excluding: Set<Int> = [], preferred: Int? = nil, now: NIODeadline? = nil) -> Int? {
        // One server (most backends): whatever its state it is the last resort anyway, so only a
        // drain or a failed try rules it out; no arrays, no clock read per request.
        if pools.count == 1 { return excluding.contains(0) || draining[0] ? nil : 0 }
        let now = now ?? .now()
        let open = pools.indices.map { !excluding.contains($0) && !draining[$0] }
        // From the best candidates to the last resort: the first tier with a server in it.
        let tiers: [(Int) -> Bool] = [
            { !self.down[$0] && !self.unhealthy[$0] && !self.health[$0].isEjected(at: now) },
            { !self.down[$0] && !self.unhealthy[$0] },
            { !self.down[$0] },
            { _ in true },
        ]
        for (level, admits) in tiers.enumerated() {
            let eligible = pools.indices.map { open[$0] && admits($0) }
            guard eligible.contains(true) else { continue }
            if level == 0, let preferred, eligible.indices.contains(preferred), eligible[preferred] { return preferred }
            return balancer.pick(loads: loads, eligible: eligible, key: key, weightsNow: rampedWeights(now: now))
        }
        return nil
    }

    /// Weights scaled by 10, each server back in rotation within `slow_start` at a share growing
    /// from a tenth to all of it; nil when no server is ramping up.
    func rampedWeights(now: NIODeadline) -> [Int]? {
        let window = backend.slowStart.wholeMilliseconds
        guard window > 0 else { return nil }
        var ramping = false
        let weights = pools.indices.map { index -> Int in
            let configured = backend.servers[index].weight * 10
            var since = cameBack[index]
            if let until = health[index].ejectedUntil, until <= now, since.map({ $0 < until }) ?? true { since = until }
            guard let since else { return configured }
            let elapsed = (now - since).nanoseconds / 1_000_000
            guard elapsed < window else { return configured }
            ramping = true
            return max(1, configured * max(Int(elapsed), Int(window) / 10) / Int(window))
        }
        return ramping ? weights : nil
    }

    /// A server's return to rotation, for slow start.
    private func cameBack(_ server: Int) {
        if backend.slowStart > .zero { cameBack[server] = .now() }
    }

    /// A connect failure or a reset before any response byte; true when it ejected the server.
    @discardableResult
    func recordFailure(server: Int, now: NIODeadline = .now()) -> Bool {
        guard backend.maxFails > 0 else { return false }
        health[server].consecutiveFailures += 1
        guard health[server].consecutiveFailures >= backend.maxFails, !health[server].isEjected(at: now) else {
            return false
        }
        health[server].consecutiveFailures = 0
        health[server].ejections += 1
        let period = backend.failTimeout.wholeMilliseconds << min(health[server].ejections - 1, 5)
        health[server].ejectedUntil = now + .milliseconds(period)
        return true
    }

    func recordSuccess(server: Int) {
        guard health[server].consecutiveFailures > 0 || health[server].ejections > 0 else { return }
        health[server] = PassiveHealth()
    }

    /// Each server's value in the sticky cookie: a stable digest of its address (the same in every
    /// worker and across restarts, and saying nothing of the address itself).
    private(set) lazy var stickyValues: [String] = backend.servers.map {
        String(Balancer.fnv1a("ferry-sticky " + $0.address.description), radix: 16)
    }

    /// The server a sticky cookie value names.
    func server(stickyValue: String) -> Int? { stickyValues.firstIndex(of: stickyValue) }

    /// Whether this backend's policy hashes on something of the request.
    var hashKey: BalancePolicy.HashKey? {
        if case .hash(let key) = backend.balance { return key }
        return nil
    }

    /// The master's word on an instance; true when every server is down now.
    func setDown(_ server: Int, _ isDown: Bool) -> Bool {
        if down[server] && !isDown { cameBack(server) }
        down[server] = isDown
        if isDown { pools[server].closeIdle(reason: .backendClose) }
        return !down.contains(false)
    }

    func setHealthy(_ server: Int, _ healthy: Bool) {
        guard unhealthy.indices.contains(server) else { return }
        if unhealthy[server] && healthy { cameBack(server) }
        unhealthy[server] = !healthy
        if !healthy { pools[server].closeIdle(reason: .backendClose) }
    }

    func setDraining(_ server: Int, _ isDraining: Bool) {
        guard draining.indices.contains(server) else { return }
        if draining[server] && !isDraining { cameBack(server) }
        draining[server] = isDraining
        if isDraining { pools[server].closeIdle(reason: .draining) }
    }

    func tunnelOpened(server: Int) { tunnels[server] += 1 }
    func tunnelClosed(server: Int) { tunnels[server] -= 1 }
}

extension BackendAddress {
    /// Connects `bootstrap` here (a numeric address without a resolver round trip).
    func connect(_ bootstrap: ClientBootstrap) -> EventLoopFuture<any Channel> {
        switch self {
        case .unix(let path):
            return bootstrap.connect(unixDomainSocketPath: path)
        case .inet(let host, let port):
            if let address = try? SocketAddress(ipAddress: host, port: port) {
                return bootstrap.connect(to: address)
            }
            return bootstrap.connect(host: host, port: port)
        }
    }
}
