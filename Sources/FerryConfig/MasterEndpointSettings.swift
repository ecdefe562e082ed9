/// The master's own HTTP endpoints: the status page (`[admin]`) and readiness (`[health]`).

// MARK: - [admin]

/// `[admin]`: the master's status page (`/`), its data (`/status.json`, `/history.json`) and the
/// readiness endpoints, in plain HTTP. Loopback clients are let in; others need `user` and the
/// password whose SHA-256 is `password_sha256` (HTTP Basic), or get 403 when none is set.
public struct AdminSettings: Sendable, Equatable {
    public var listen: ListenAddress
    public var user: String?
    /// Lowercase hex SHA-256 of the password.
    public var passwordSHA256: String?

    public init(listen: ListenAddress, user: String? = nil, passwordSHA256: String? = nil) {
        self.listen = listen
        self.user = user
        self.passwordSHA256 = passwordSHA256
    }
}

// MARK: - [health]

/// A plain-HTTP endpoint the master serves for load balancers and orchestrators: `/ready` (200 while
/// this host takes traffic, 503 from the moment a stop begins) and `/live` (200 while the master
/// runs).
public struct HealthEndpointSettings: Sendable, Equatable {
    public var listen: ListenAddress
    /// How long a stop keeps serving normally after `/ready` turned 503, so balancers take the host
    /// out before it stops accepting.
    public var drainDelay: Duration

    public init(listen: ListenAddress, drainDelay: Duration = .zero) {
        self.listen = listen
        self.drainDelay = drainDelay
    }
}
