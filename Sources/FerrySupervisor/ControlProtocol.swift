public import FerryConfig
import Foundation

/// Messages between the master and a worker over the worker's socketpair (fd 3), one JSON object
/// per line. The master sends the configuration *text* first, so a worker never re-reads a file
/// that may have changed since the master validated it.
public enum MasterToWorker: Codable, Sendable, Equatable {
    /// `ticketKeys`: this host's own session ticket key (base64, 80 bytes), for listeners without
    /// a `ticket_keys` file; `fileTicketKeys`: listener name → the keys of its file (base64, the
    /// encrypting key first).
    case configure(
        source: String, fileName: String, ticketKeys: String, fileTicketKeys: [String: [String]], generation: Int,
        heartbeatMilliseconds: Int)
    /// A reload applied in place: the new configuration (validated by the master; same listeners)
    /// for new requests and handshakes; answered with `reconfigured` or `reconfigureFailed`.
    case reconfigure(source: String, fileName: String, fileTicketKeys: [String: [String]], version: Int)
    /// A listener's `ticket_keys` file changed: new handshakes use these keys (base64, first encrypts).
    case ticketKeys(listener: String, keys: [String])
    case backend(name: String, available: Bool)
    /// Start accepting on the listeners (sent once no other process accepts on this slot's sockets).
    case accept
    /// Stop accepting (answered with `stoppedAccepting`), then finish what is open and exit.
    case drain(gracefulMilliseconds: Int)
    /// To a booted standby worker: serve `slot` (its listeners are among the standby's fds),
    /// answered with `ready` as a new worker's boot is.
    case adopt(slot: Int)
    /// An active health check took server `server` (index in the backend's servers) out of
    /// rotation or brought it back.
    case health(backend: String, server: Int, healthy: Bool)
    /// `ferry server drain|enable`: a draining server takes no new requests or tunnels; what it
    /// has open finishes (WebSockets stay until they close).
    case serverDraining(backend: String, server: Int, draining: Bool)
    /// The drain deadline passed: the server's WebSockets get 1001 and close.
    case closeServerTunnels(backend: String, server: Int)
}

public enum WorkerToMaster: Codable, Sendable, Equatable {
    case ready
    case heartbeat(stats: WorkerStats)
    /// The worker's listeners are closed: the master may let the slot's next worker accept.
    case stoppedAccepting
    case drained
    case bootFailed(reason: String)
    /// The configuration of `version` is in use for new requests and handshakes.
    case reconfigured(version: Int)
    /// The worker could not apply it (it keeps the previous one; the master replaces it).
    case reconfigureFailed(version: Int, reason: String)
    /// The worker itself got SIGTERM or SIGINT (systemd's default KillMode signals every process of
    /// the unit; a terminal's Ctrl-C signals the whole process group). It keeps serving: the master
    /// drains it, after starting its replacement unless the master is stopping too.
    case stopRequested(signal: Int32)
}

/// A request on the control socket (`ferry status|reload|stop`), one JSON line.
public struct ControlRequest: Codable, Sendable {
    public var command: String
    /// `server-drain` / `server-enable`: the backend and the server (address, or 1-based index).
    public var arguments: [String]?

    public init(command: String, arguments: [String]? = nil) {
        self.command = command
        self.arguments = arguments
    }
}

/// The answer to a control request.
public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var message: String?
    public var status: StatusDocument?
    public var metrics: String?

    public init(ok: Bool, message: String? = nil, status: StatusDocument? = nil, metrics: String? = nil) {
        self.ok = ok
        self.message = message
        self.status = status
        self.metrics = metrics
    }
}

/// What `ferry status` shows (and `--json` prints as is).
public struct StatusDocument: Codable, Sendable {
    public struct ReloadResult: Codable, Sendable {
        public var ok: Bool
        public var message: String
        public var at: Double
    }

    public struct Worker: Codable, Sendable {
        public var pid: Int32
        public var generation: Int
        public var slot: Int
        public var state: String
        public var restarts: Int
        /// Whether the master has let this worker accept (false while an older worker of its slot
        /// still accepts on the shared sockets); absent from older masters.
        public var accepting: Bool?
        public var stats: WorkerStats?
        /// The configuration version the worker runs (bumped by each reload applied in place) and
        /// when it took it; absent from older masters.
        public var configVersion: Int?
        public var configuredAt: Double?
    }

    /// One server of a backend with several: its state for new work, and what it carries.
    public struct Server: Codable, Sendable, Equatable {
        public var backend: String
        public var server: String
        public var weight: Int
        /// "up", "down" (health checks), "draining", or a spawned instance's phase.
        public var state: String
        public var active: Int
        public var tunnels: Int
        public var retries: Int
    }

    /// One server's active health check (backends with `[backend.health]`).
    public struct ServerHealth: Codable, Sendable, Equatable {
        public var backend: String
        public var server: String
        /// "up" or "down".
        public var state: String
        public var lastCheck: Double?
        public var latencyMilliseconds: Double?
        public var lastResult: String
    }

    /// A slot left without a worker because its worker could not boot (not respawned until a
    /// reload, which starts every slot again).
    public struct UnservedSlot: Codable, Sendable, Equatable {
        public var slot: Int
        public var reason: String
        public var at: Double
    }

    public struct Backend: Codable, Sendable {
        public var name: String
        public var address: String
        public var pid: Int32?
        public var state: String
        public var restarts: Int
        public var supervised: Bool
    }

    public var masterPID: Int32
    public var uptimeSeconds: Double
    public var generation: Int
    /// The configuration version (see `Worker.configVersion`); absent from older masters.
    public var configVersion: Int?
    public var configFile: String
    public var lastReload: ReloadResult?
    /// Absent from older masters.
    public var unservedSlots: [UnservedSlot]?
    public var workers: [Worker]
    /// Booted idle workers waiting to take over the slot of one that dies (slot -1); absent from
    /// older masters.
    public var standby: [Worker]?
    public var backends: [Backend]
    /// Every server of backends with several; absent from older masters.
    public var servers: [Server]?
    /// Active health of the servers of backends that have checks; absent from older masters.
    public var health: [ServerHealth]?
    /// Pool counters summed over the workers of the current generation.
    public var pools: [PoolStats]
    /// The listeners' certificates; absent from older masters.
    public var certificates: [CertificateStatus]?
    /// The master's last 50 log lines at info and above; absent from older masters.
    public var events: [StatusEvent]?
    /// The last second's rates (the newest `/history.json` sample); absent until one is taken.
    public var latest: HistorySample?
}

enum JSONLine {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func encode<T: Encodable>(_ value: T) -> String {
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    static func decode<T: Decodable>(_ type: T.Type, from line: String) -> T? {
        try? JSONDecoder().decode(type, from: Data(line.utf8))
    }
}
