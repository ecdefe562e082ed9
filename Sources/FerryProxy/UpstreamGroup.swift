import FerryConfig
import NIOCore
import NIOPosix

/// One backend as an event loop sees it: its servers, each with its own HTTP keep-alive pool and
/// its count of open tunnels, and the balancer that picks a server for each new request or tunnel.
///
/// A server's load is what this loop has in flight there: leased and connecting pooled connections
/// plus open tunnels. Pools stay per server and per protocol: the tunnel connector never touches a
/// pool, whichever server it connects to.
final class UpstreamGroup {
    let backend: BackendConfiguration
    let pools: [HTTPConnectionPool]
    private(set) var tunnels: [Int]
    private var balancer: Balancer

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
        balancer = Balancer(
            policy: backend.balance, weights: backend.servers.map(\.weight),
            names: backend.servers.map(\.address.description))
    }

    var loads: [Int] { pools.indices.map { pools[$0].inFlight + tunnels[$0] } }

    /// The server for a new request or tunnel (`key`: the hash policy's key, if any).
    func pick(key: String?) -> Int {
        if pools.count == 1 { return 0 }
        return balancer.pick(loads: loads, eligible: Array(repeating: true, count: pools.count), key: key) ?? 0
    }

    /// Whether this backend's policy hashes on something of the request.
    var hashKey: BalancePolicy.HashKey? {
        if case .hash(let key) = backend.balance { return key }
        return nil
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
