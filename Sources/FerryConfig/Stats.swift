/// Counters a worker reports to the master (heartbeats) and that `ferry status`
/// prints. They live here, beside the configuration model, because both the
/// data plane (FerryProxy) and the supervisor use them and neither may import
/// the other.
public struct WorkerStats: Codable, Sendable, Equatable {
    public var connectionsOpen: Int
    public var connectionsTotal: Int
    public var requests: Int
    public var activeTunnels: Int
    /// TLS handshake failures by reason.
    public var tlsFailures: [String: Int]
    public var routes: [RouteStats]
    public var pools: [PoolStats]
    /// Client connections the worker holds at most (configured limit, lowered to fit RLIMIT_NOFILE).
    public var connectionLimit: Int = 0
    /// Times accepting paused because the worker was at its connection limit or descriptor budget.
    public var acceptPauses: Int = 0
    /// `accept` calls that failed for lack of descriptors (EMFILE, ENFILE…).
    public var acceptErrors: Int = 0
    /// Connections closed for a missing, malformed, late or untrusted PROXY protocol header.
    public var proxyProtocolRefused: Int = 0
    /// Connections and requests by protocol, and HTTP/2's own counters.
    public var protocols = ProtocolStats()

    public init(
        connectionsOpen: Int = 0,
        connectionsTotal: Int = 0,
        requests: Int = 0,
        activeTunnels: Int = 0,
        tlsFailures: [String: Int] = [:],
        routes: [RouteStats] = [],
        pools: [PoolStats] = []
    ) {
        self.connectionsOpen = connectionsOpen
        self.connectionsTotal = connectionsTotal
        self.requests = requests
        self.activeTunnels = activeTunnels
        self.tlsFailures = tlsFailures
        self.routes = routes
        self.pools = pools
    }
}

public struct RouteStats: Codable, Sendable, Equatable {
    public var path: String
    public var backend: String?
    public var requests: Int
    /// Responses by class: "1xx" … "5xx".
    public var responses: [String: Int]
    public var bytesIn: Int
    public var bytesOut: Int
    public var upgrades: Int
    public var activeTunnels: Int

    public init(
        path: String, backend: String?, requests: Int = 0, responses: [String: Int] = [:], bytesIn: Int = 0,
        bytesOut: Int = 0, upgrades: Int = 0, activeTunnels: Int = 0
    ) {
        self.path = path
        self.backend = backend
        self.requests = requests
        self.responses = responses
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.upgrades = upgrades
        self.activeTunnels = activeTunnels
    }
}

/// Why a backend connection was closed instead of going back to (or staying in) its pool.
public enum PoolCloseReason: String, Codable, Sendable, CaseIterable {
    case notReusableFraming = "not_reusable_framing"
    case backendClose = "backend_close"
    case upgraded
    case error
    case idleTimeout = "idle_timeout"
    case unexpectedData = "unexpected_data"
    case maxRequests = "max_requests"
    case poolFull = "pool_full"
    /// Idle connections closed to give descriptors back when the worker reached its limit.
    case descriptorLimit = "descriptor_limit"
    case draining
    /// The backend's address, servers or pool settings changed in a reload applied in place: its
    /// old pool takes no new exchange, and each connection closes when its exchange ends.
    case reconfigured
}

public struct PoolStats: Codable, Sendable, Equatable {
    public var backend: String
    /// The server's address when the backend has several (one pool per server); absent otherwise.
    public var server: String?
    /// HTTP pools of backends with several servers: exchanges in flight there now, and open
    /// WebSocket tunnels to that server (what the balancer counts). Absent otherwise.
    public var active: Int?
    public var tunnels: Int?
    /// "http" for the keep-alive pool, "websocket" for the tunnel connector (never pooled).
    public var `protocol`: String
    public var opened: Int
    public var reused: Int
    /// Closed connections by `PoolCloseReason.rawValue`.
    public var closed: [String: Int]
    public var idle: Int
    public var retries: Int
    public var upgrades: Int

    public init(
        backend: String, server: String? = nil, protocol: String, opened: Int = 0, reused: Int = 0,
        closed: [String: Int] = [:],
        idle: Int = 0, retries: Int = 0, upgrades: Int = 0
    ) {
        self.backend = backend
        self.server = server
        self.protocol = `protocol`
        self.opened = opened
        self.reused = reused
        self.closed = closed
        self.idle = idle
        self.retries = retries
        self.upgrades = upgrades
    }
}

// MARK: - Summing counters (event loops of a worker, workers of a generation)

extension WorkerStats {
    /// Adds `other`'s counters; routes and pools are matched by position (the same configuration
    /// yields the same order) or, for pools, by backend and protocol.
    public mutating func add(_ other: WorkerStats) {
        connectionsOpen += other.connectionsOpen
        connectionsTotal += other.connectionsTotal
        requests += other.requests
        activeTunnels += other.activeTunnels
        connectionLimit += other.connectionLimit
        acceptPauses += other.acceptPauses
        acceptErrors += other.acceptErrors
        proxyProtocolRefused += other.proxyProtocolRefused
        protocols.add(other.protocols)
        tlsFailures.merge(other.tlsFailures, uniquingKeysWith: +)
        if routes.isEmpty {
            routes = other.routes
        } else {
            for index in routes.indices where other.routes.indices.contains(index) {
                routes[index].add(other.routes[index])
            }
        }
        pools = PoolStats.sum(pools + other.pools)
    }
}

extension RouteStats {
    public mutating func add(_ other: RouteStats) {
        requests += other.requests
        bytesIn += other.bytesIn
        bytesOut += other.bytesOut
        upgrades += other.upgrades
        activeTunnels += other.activeTunnels
        responses.merge(other.responses, uniquingKeysWith: +)
    }
}

extension PoolStats {
    public mutating func add(_ other: PoolStats) {
        opened += other.opened
        reused += other.reused
        idle += other.idle
        retries += other.retries
        upgrades += other.upgrades
        closed.merge(other.closed, uniquingKeysWith: +)
        if let count = other.active { active = (active ?? 0) + count }
        if let count = other.tunnels { tunnels = (tunnels ?? 0) + count }
    }

    /// Pools with the same backend and protocol summed, in order of first appearance.
    public static func sum(_ pools: [PoolStats]) -> [PoolStats] {
        var result: [PoolStats] = []
        for pool in pools {
            if let index = result.firstIndex(where: {
                $0.backend == pool.backend && $0.server == pool.server && $0.protocol == pool.protocol
            }) {
                result[index].add(pool)
            } else {
                result.append(pool)
            }
        }
        return result
    }
}

extension WorkerStats {
    enum CodingKeys: String, CodingKey {
        case connectionsOpen, connectionsTotal, requests, activeTunnels, tlsFailures, routes, pools
        case connectionLimit, acceptPauses, acceptErrors, proxyProtocolRefused, protocols
    }

    /// Counters added later decode as 0 when absent, so a master and workers of different builds
    /// (a binary upgraded under a running master) still understand each other's heartbeats.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            connectionsOpen: try container.decode(Int.self, forKey: .connectionsOpen),
            connectionsTotal: try container.decode(Int.self, forKey: .connectionsTotal),
            requests: try container.decode(Int.self, forKey: .requests),
            activeTunnels: try container.decode(Int.self, forKey: .activeTunnels),
            tlsFailures: try container.decode([String: Int].self, forKey: .tlsFailures),
            routes: try container.decode([RouteStats].self, forKey: .routes),
            pools: try container.decode([PoolStats].self, forKey: .pools))
        connectionLimit = try container.decodeIfPresent(Int.self, forKey: .connectionLimit) ?? 0
        acceptPauses = try container.decodeIfPresent(Int.self, forKey: .acceptPauses) ?? 0
        acceptErrors = try container.decodeIfPresent(Int.self, forKey: .acceptErrors) ?? 0
        proxyProtocolRefused = try container.decodeIfPresent(Int.self, forKey: .proxyProtocolRefused) ?? 0
        protocols = try container.decodeIfPresent(ProtocolStats.self, forKey: .protocols) ?? ProtocolStats()
    }
}

/// Client connections and requests by the protocol they speak (ALPN), streams and WebSockets on
/// HTTP/2 connections, and what HTTP/2's limits refused.
public struct ProtocolStats: Codable, Sendable, Equatable {
    public var http1Connections = 0
    public var http1Requests = 0
    public var http2Connections = 0
    public var http2Requests = 0
    public var http2StreamsOpen = 0
    /// WebSockets opened over HTTP/2 streams (RFC 8441).
    public var http2Tunnels = 0
    /// HTTP/2 connections or streams ended by a limit or a protocol error, by reason
    /// (`rapid_reset`, `continuation_flood`, `control_frame_flood`, `header_list_too_large`,
    /// `zero_window`, `malformed`, ...: `HTTP2Connection.refusalReason`).
    public var http2Refused: [String: Int] = [:]

    public init() {}

    public mutating func add(_ other: ProtocolStats) {
        http1Connections += other.http1Connections
        http1Requests += other.http1Requests
        http2Connections += other.http2Connections
        http2Requests += other.http2Requests
        http2StreamsOpen += other.http2StreamsOpen
        http2Tunnels += other.http2Tunnels
        http2Refused.merge(other.http2Refused, uniquingKeysWith: +)
    }
}
