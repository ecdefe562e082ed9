/// A validated Ferry configuration: what `ferry check` accepts and what the
/// master, the workers and the backends are built from.
///
/// Every value here has already passed validation (names unique, routes point
/// at known backends, addresses parse, durations and sizes are in range), so
/// consumers never re-check. Parsing lives in `ConfigurationLoader`.
public struct FerryConfiguration: Sendable, Equatable {
    public var master: MasterSettings
    public var listeners: [ListenerConfiguration]
    public var backends: [BackendConfiguration]
    public var routes: [RouteConfiguration]
    public var pool: PoolSettings
    public var limits: LimitSettings
    public var http2 = HTTP2Settings()
    /// The readiness and liveness endpoint for load balancers (`[health]`); nil: none.
    public var health: HealthEndpointSettings?
    /// The status page, its JSON and /ready, /live (`[admin]`); nil: none.
    public var admin: AdminSettings?

    public init(
        master: MasterSettings = MasterSettings(),
        listeners: [ListenerConfiguration] = [],
        backends: [BackendConfiguration] = [],
        routes: [RouteConfiguration] = [],
        pool: PoolSettings = PoolSettings(),
        limits: LimitSettings = LimitSettings()
    ) {
        self.master = master
        self.listeners = listeners
        self.backends = backends
        self.routes = routes
        self.pool = pool
        self.limits = limits
    }

    /// The backend with this name, if any.
    public func backend(named name: String) -> BackendConfiguration? {
        backends.first { $0.name == name }
    }

    /// What the master supervises: every backend, instance by instance (`name/i`).
    public var supervisedUnits: [BackendConfiguration] { backends.flatMap(\.instanceConfigurations) }

    public func supervisedUnit(named name: String) -> BackendConfiguration? {
        supervisedUnits.first { $0.name == name }
    }
}

// MARK: - [master]

public struct MasterSettings: Sendable, Equatable {
    public enum WorkerCount: Sendable, Equatable {
        /// One worker per online CPU core.
        case auto
        case fixed(Int)
    }

    public enum LogLevel: String, Sendable, Equatable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    public enum LogFormat: String, Sendable, Equatable, CaseIterable {
        case text, json
    }

    public enum AccessLogFormat: String, Sendable, Equatable, CaseIterable {
        case off, combined, json
    }

    public var workers: WorkerCount
    /// User and group that workers and backends drop to when the master runs as root.
    public var user: String?
    public var group: String?
    public var controlSocket: String
    /// Permission bits of the control socket (0o600 by default).
    public var controlSocketMode: UInt16
    /// A group whose members may also use the control socket.
    public var controlSocketGroup: String?
    /// Where generated state (the self-signed certificate, ticket keys) is kept.
    public var stateDirectory: String
    public var gracefulTimeout: Duration
    /// How often workers report to the master; a worker silent for three
    /// intervals is killed.
    public var heartbeatInterval: Duration
    /// One booted, idle worker kept ready to take over the slot of a worker that dies.
    public var standbyWorker: Bool
    public var logLevel: LogLevel
    public var logFormat: LogFormat
    public var accessLog: AccessLogFormat
    /// Optional log file (stderr when absent); reopened on SIGUSR1.
    public var logFile: String?

    public init(
        workers: WorkerCount = .auto,
        user: String? = nil,
        group: String? = nil,
        controlSocket: String = "/run/ferry/control.sock",
        controlSocketMode: UInt16 = 0o600,
        controlSocketGroup: String? = nil,
        stateDirectory: String = "/var/lib/ferry",
        gracefulTimeout: Duration = .seconds(30),
        heartbeatInterval: Duration = .seconds(1),
        standbyWorker: Bool = true,
        logLevel: LogLevel = .info,
        logFormat: LogFormat = .text,
        accessLog: AccessLogFormat = .combined,
        logFile: String? = nil
    ) {
        self.workers = workers
        self.user = user
        self.group = group
        self.controlSocket = controlSocket
        self.controlSocketMode = controlSocketMode
        self.controlSocketGroup = controlSocketGroup
        self.stateDirectory = stateDirectory
        self.gracefulTimeout = gracefulTimeout
        self.heartbeatInterval = heartbeatInterval
        self.standbyWorker = standbyWorker
        self.logLevel = logLevel
        self.logFormat = logFormat
        self.accessLog = accessLog
        self.logFile = logFile
    }
}

// MARK: - [[listen]]

public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// A numeric IPv4 or IPv6 address (no brackets) and a port; port 0 asks the kernel for one.
    case inet(host: String, port: Int)
    /// A socket passed by systemd socket activation, matched by `FileDescriptorName`.
    case systemd(name: String)

    public var description: String {
        switch self {
        case .inet(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .systemd(let name): "systemd:\(name)"
        }
    }
}

public struct ListenerConfiguration: Sendable, Equatable {
    public var name: String
    public var address: ListenAddress
    public var backlog: Int
    /// nil: plain HTTP (linted when the address is not loopback).
    public var tls: TLSSettings?
    /// PROXY protocol (v1 or v2) in front of every connection from `proxyProtocolFrom` (every
    /// source when empty): required from those, refused from any other source.
    public var proxyProtocol = false
    public var proxyProtocolFrom: [CIDRBlock] = []
    /// How long a connection that owes a PROXY header may take to send it.
    public var proxyProtocolTimeout: Duration = .seconds(5)
    /// A plain-HTTP listener that answers every request with 308 to `https://` on this port (the
    /// first TLS listener's unless `redirect_port` says otherwise); nil: it serves routes.
    public var redirectToHTTPSPort: Int?

    public init(name: String, address: ListenAddress, backlog: Int = 511, tls: TLSSettings? = nil) {
        self.name = name
        self.address = address
        self.backlog = backlog
        self.tls = tls
    }
}

public enum TLSVersion: String, Sendable, Equatable, CaseIterable {
    case tls12 = "1.2"
    case tls13 = "1.3"
}

/// One certificate chain and its key; `serverNames` select it by SNI.
public struct CertificateConfiguration: Sendable, Equatable {
    /// PEM file: leaf first, then intermediates.
    public var certificatePath: String
    public var keyPath: String
    /// SNI names (exact, or `*.example.com`) this certificate answers; empty for the default.
    public var serverNames: [String]

    public init(certificatePath: String, keyPath: String, serverNames: [String] = []) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.serverNames = serverNames
    }
}

public struct TLSSettings: Sendable, Equatable {
    /// The first certificate is the default when no SNI name matches.
    public var certificates: [CertificateConfiguration]
    public var minimumVersion: TLSVersion
    public var alpn: [String]
    public var handshakeTimeout: Duration
    /// When true (the embedded default), a self-signed certificate is generated
    /// in the state directory if the configured files do not exist yet.
    public var selfSigned: Bool
    /// `ticket_keys`: a file of session ticket keys shared by a fleet (see `TicketKeyFile`), read
    /// by the master and watched for changes. nil: keys of this host's own, new at each start and
    /// reload.
    public var ticketKeysPath: String?
    /// `[listen.tls.acme]`: the default certificate (the first) comes from an ACME CA; until it
    /// exists, a temporary self-signed one for the names serves.
    public var acme: ACMESettings?

    public init(
        certificates: [CertificateConfiguration],
        minimumVersion: TLSVersion = .tls12,
        alpn: [String] = ["h2", "http/1.1"],
        handshakeTimeout: Duration = .seconds(10),
        selfSigned: Bool = false
    ) {
        self.certificates = certificates
        self.minimumVersion = minimumVersion
        self.alpn = alpn
        self.handshakeTimeout = handshakeTimeout
        self.selfSigned = selfSigned
    }
}

// MARK: - [[backend]]

public enum BackendAddress: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// A host name or numeric IPv4/IPv6 address (no brackets) and a port.
    case inet(host: String, port: Int)
    /// A Unix domain socket path (`unix:/path` in the file).
    case unix(path: String)

    public var description: String {
        switch self {
        case .inet(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}

public struct WebSocketServiceOptions: Sendable, Equatable {
    /// Where synthesized audio is written (served by a static backend).
    public var resultsDirectory: String
    /// Oldest results are deleted once the directory grows beyond this.
    public var resultsMaxBytes: Int
    public var maxMessageBytes: Int
    /// Messages a connection may send per second before it is told to slow down.
    public var messagesPerSecond: Int
    public var idleTimeout: Duration

    public init(
        resultsDirectory: String = "/var/lib/ferry/results",
        resultsMaxBytes: Int = 256 * 1024 * 1024,
        maxMessageBytes: Int = 64 * 1024,
        messagesPerSecond: Int = 20,
        idleTimeout: Duration = .seconds(300)
    ) {
        self.resultsDirectory = resultsDirectory
        self.resultsMaxBytes = resultsMaxBytes
        self.maxMessageBytes = maxMessageBytes
        self.messagesPerSecond = messagesPerSecond
        self.idleTimeout = idleTimeout
    }
}

public struct StaticServiceOptions: Sendable, Equatable {
    public var root: String
    /// `Cache-Control` header value sent with every file.
    public var cacheControl: String
    /// File served for a request of a directory (e.g. `/`); nil: 404.
    public var index: String?
    /// Serve Ferry's built-in demo page (WebSocket + HTTP through one prefix) at `/`.
    public var demoPage: Bool

    public init(
        root: String,
        cacheControl: String = "public, max-age=3600",
        index: String? = "index.html",
        demoPage: Bool = false
    ) {
        self.root = root
        self.cacheControl = cacheControl
        self.index = index
        self.demoPage = demoPage
    }
}

public struct RestartPolicy: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable, CaseIterable {
        case always
        case onFailure = "on-failure"
        case never
    }

    public var mode: Mode
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// More than this many restarts within `crashLoopWindow` and the backend is marked failed.
    public var crashLoopLimit: Int
    public var crashLoopWindow: Duration

    public init(
        mode: Mode = .always,
        initialBackoff: Duration = .milliseconds(100),
        maxBackoff: Duration = .seconds(30),
        crashLoopLimit: Int = 10,
        crashLoopWindow: Duration = .seconds(60)
    ) {
        self.mode = mode
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.crashLoopLimit = crashLoopLimit
        self.crashLoopWindow = crashLoopWindow
    }
}

public struct ReadinessCheck: Sendable, Equatable {
    /// nil: ready once the address accepts a connection; else an HTTP GET that must answer 2xx.
    public var httpPath: String?
    public var timeout: Duration

    public init(httpPath: String? = nil, timeout: Duration = .seconds(30)) {
        self.httpPath = httpPath
        self.timeout = timeout
    }
}

/// Active health checks of a backend's servers, run once per host by the master (`[backend.health]`).
public struct HealthCheckSettings: Sendable, Equatable {
    /// An HTTP GET of this path; nil: a TCP connect.
    public var path: String?
    /// The Host header of the GET.
    public var host: String
    /// Statuses that count as healthy (default: 200–399).
    public var statuses: [Int]?
    public var interval: Duration
    public var timeout: Duration
    /// Checks in a row that bring a down server up, and take an up server down.
    public var rise: Int
    public var fall: Int

    public init(
        path: String? = nil, host: String = "localhost", statuses: [Int]? = nil, interval: Duration = .seconds(2),
        timeout: Duration = .seconds(1), rise: Int = 2, fall: Int = 3
    ) {
        self.path = path
        self.host = host
        self.statuses = statuses
        self.interval = interval
        self.timeout = timeout
        self.rise = rise
        self.fall = fall
    }

    public func isHealthy(status: Int) -> Bool {
        statuses.map { $0.contains(status) } ?? (200..<400).contains(status)
    }
}

public struct CommandSpec: Sendable, Equatable {
    public var argv: [String]
    public var environment: [String: String]
    public var workingDirectory: String?

    public init(argv: [String], environment: [String: String] = [:], workingDirectory: String? = nil) {
        self.argv = argv
        self.environment = environment
        self.workingDirectory = workingDirectory
    }
}

public enum BackendKind: Sendable, Equatable {
    /// Proxied to, never spawned.
    case external
    case builtinWebSocket(WebSocketServiceOptions)
    case builtinStatic(StaticServiceOptions)
    case command(CommandSpec)

    /// Whether the master spawns and supervises this backend.
    public var isSupervised: Bool {
        if case .external = self { return false }
        return true
    }
}

/// One server of a backend: where it listens and its share of new work.
public struct ServerConfiguration: Sendable, Equatable, Hashable {
    public var address: BackendAddress
    /// Relative share of new requests and tunnels (1…1000).
    public var weight: Int

    public init(address: BackendAddress, weight: Int = 1) {
        self.address = address
        self.weight = weight
    }
}

/// How a backend's requests and tunnels are spread over its servers (per worker; see decisions).
public enum BalancePolicy: Sendable, Equatable {
    /// Smooth weighted round robin (nginx's).
    case roundRobin
    /// The server with the fewest in-flight requests plus open tunnels per unit of weight.
    case leastConnections
    /// Two servers drawn at random (by weight), the less loaded one taken.
    case randomTwoChoices
    /// Consistent hashing of a request key: the same key goes to the same server, and adding a
    /// server moves about 1/N of the keys.
    case hash(HashKey)

    public enum HashKey: Sendable, Equatable {
        case clientAddress
        case header(String)
        case cookie(String)
    }

    /// The names used in the file.
    public static let names = ["round_robin", "least_connections", "random_two_choices", "hash"]
}

public struct BackendConfiguration: Sendable, Equatable {
    public var name: String
    /// The first server's address (the only one for most backends, and for spawned ones).
    public var address: BackendAddress
    /// Every server, the first at `address`.
    public var servers: [ServerConfiguration]
    public var balance: BalancePolicy
    /// How many times a request that failed before any response byte is tried again on another
    /// server (idempotent methods, or a body not sent yet).
    public var retries: Int
    /// Passive health (nginx's names): this many failures in a row take a server out of rotation
    /// for `failTimeout`, doubled at each new ejection up to 32 times.
    public var maxFails: Int
    public var failTimeout: Duration
    /// Spawned backends: how many processes run it, each supervised on its own and a server of
    /// this backend (`instanceConfigurations`).
    public var instances = 1
    /// A server back in rotation (healthy again, restarted, ejection over, enabled) gets its share
    /// of new work ramped up from a tenth over this long; zero: its full share at once.
    public var slowStart: Duration = .zero
    /// A cookie Ferry sets to keep a client on the server it got (any balance policy): requests
    /// carrying it go to that server while it takes new work. nil: none.
    public var stickyCookie: String?
    /// Active health checks; nil: none (passive ejection and the master's supervision only).
    public var health: HealthCheckSettings?
    public var kind: BackendKind
    public var restart: RestartPolicy
    public var readiness: ReadinessCheck
    public var connectTimeout: Duration
    /// How long a request waits for a backend that is starting or restarting before 503.
    public var queueTimeout: Duration

    public init(
        name: String,
        address: BackendAddress,
        kind: BackendKind = .external,
        restart: RestartPolicy = RestartPolicy(),
        readiness: ReadinessCheck = ReadinessCheck(),
        connectTimeout: Duration = .seconds(5),
        queueTimeout: Duration = .seconds(5),
        servers: [ServerConfiguration]? = nil,
        balance: BalancePolicy = .leastConnections,
        retries: Int = 2,
        maxFails: Int = 3,
        failTimeout: Duration = .seconds(10)
    ) {
        self.retries = retries
        self.maxFails = maxFails
        self.failTimeout = failTimeout
        self.name = name
        self.address = servers?.first?.address ?? address
        self.servers = servers ?? [ServerConfiguration(address: address)]
        self.balance = balance
        self.kind = kind
        self.restart = restart
        self.readiness = readiness
        self.connectTimeout = connectTimeout
        self.queueTimeout = queueTimeout
    }
}

// MARK: - [[route]]

public enum RouteProtocol: String, Sendable, Equatable, CaseIterable {
    /// Decided per request: upgrades tunnel, everything else goes over HTTP.
    case auto
    /// Plain HTTP only; an upgrade request is refused with 400.
    case http
    /// WebSocket only; a plain request gets 426.
    case websocket
}

public enum RouteAction: Sendable, Equatable {
    case proxy(backend: String)
    /// Answer directly (nginx `return`, HAProxy `deny`).
    case respond(status: Int, body: String?)
    case redirect(location: String, status: Int)
}

public struct RouteTimeouts: Sendable, Equatable {
    public var connect: Duration?
    /// Time to the first byte of the response, and between reads of it.
    public var response: Duration

    public init(connect: Duration? = nil, response: Duration = .seconds(60)) {
        self.connect = connect
        self.response = response
    }
}

public struct RouteConfiguration: Sendable, Equatable {
    /// Path prefix, normalized, starting with `/`.
    public var path: String
    public var action: RouteAction
    public var `protocol`: RouteProtocol
    /// Removed from the front of the path before forwarding.
    public var stripPrefix: String?
    /// Replaces the matched prefix before forwarding (applied after strip_prefix is not allowed: one or the other).
    public var rewrite: String?
    public var timeouts: RouteTimeouts
    /// `%2F` (and `%5C`, or a `\`) may appear in paths of this route; off by default, since a
    /// backend that decodes them would see other path segments than Ferry routed on.
    public var allowEncodedSlashes: Bool
    /// Host names this route serves (exact, or `*.example.org`), lowercased; empty: the default
    /// site, for requests whose host no route names.
    public var hosts: [String]

    public init(
        path: String,
        action: RouteAction,
        protocol: RouteProtocol = .auto,
        stripPrefix: String? = nil,
        rewrite: String? = nil,
        timeouts: RouteTimeouts = RouteTimeouts(),
        allowEncodedSlashes: Bool = false,
        hosts: [String] = []
    ) {
        self.path = path
        self.action = action
        self.protocol = `protocol`
        self.stripPrefix = stripPrefix
        self.rewrite = rewrite
        self.timeouts = timeouts
        self.allowEncodedSlashes = allowEncodedSlashes
        self.hosts = hosts
    }

    /// The backend name when this route proxies.
    public var backendName: String? {
        if case .proxy(let backend) = action { return backend }
        return nil
    }
}

// MARK: - [pool] and [limits]

public struct PoolSettings: Sendable, Equatable {
    public var maxIdlePerBackend: Int
    public var idleTimeout: Duration
    public var maxRequestsPerConnection: Int

    public init(
        maxIdlePerBackend: Int = 256, idleTimeout: Duration = .seconds(60), maxRequestsPerConnection: Int = 1000
    ) {
        self.maxIdlePerBackend = maxIdlePerBackend
        self.idleTimeout = idleTimeout
        self.maxRequestsPerConnection = maxRequestsPerConnection
    }
}

public struct LimitSettings: Sendable, Equatable {
    public var maxHeaderBytes: Int
    public var maxHeaderCount: Int
    public var maxBodyBytes: Int
    /// Time allowed to receive a request's headers (slowloris guard) → 408.
    public var headerTimeout: Duration
    /// Time allowed between reads of a request body.
    public var bodyTimeout: Duration
    /// Keep-alive idle time between requests on a client connection.
    public var idleTimeout: Duration
    public var maxConnectionsPerWorker: Int
    public var websocketIdleTimeout: Duration

    public init(
        maxHeaderBytes: Int = 16 * 1024,
        maxHeaderCount: Int = 100,
        maxBodyBytes: Int = 64 * 1024 * 1024,
        headerTimeout: Duration = .seconds(10),
        bodyTimeout: Duration = .seconds(30),
        idleTimeout: Duration = .seconds(75),
        maxConnectionsPerWorker: Int = 10_000,
        websocketIdleTimeout: Duration = .seconds(3600)
    ) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxConnectionsPerWorker = maxConnectionsPerWorker
        self.websocketIdleTimeout = websocketIdleTimeout
    }
}
