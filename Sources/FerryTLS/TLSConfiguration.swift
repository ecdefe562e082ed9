/// Settings for a TLS server context, independent of Ferry's configuration file (FerryTLS does not
/// import FerryConfig; the worker wiring converts).
public struct TLSServerConfiguration: Sendable, Equatable {
    public struct Certificate: Sendable, Equatable {
        /// PEM chain: leaf first, then intermediates.
        public var certificatePath: String
        public var keyPath: String
        /// Exact names or `*.example.com` wildcards selecting this certificate by SNI.
        public var serverNames: [String]

        public init(certificatePath: String, keyPath: String, serverNames: [String] = []) {
            self.certificatePath = certificatePath
            self.keyPath = keyPath
            self.serverNames = serverNames
        }
    }

    /// The first certificate is the default when SNI names none of the others.
    public var certificates: [Certificate]
    public var minimumVersion: TLSProtocolVersion
    public var alpn: [String]
    /// Session ticket keys of 80 bytes each (16 name + 32 HMAC + 32 AES), the first encrypting:
    /// shared by every worker (and, from a `ticket_keys` file, by every host) so a ticket issued by
    /// one resumes on any other. Empty: OpenSSL's per-process random keys.
    public var ticketKeys: [[UInt8]]
    /// Where the master puts TLS-ALPN-01 challenge certificates (`tls-alpn-01/<name>.pem`): a
    /// client offering `acme-tls/1` for a name with a file there gets that certificate (RFC 8737).
    /// nil: `acme-tls/1` is not answered.
    public var acmeChallengeDirectory: String?

    public init(
        certificates: [Certificate],
        minimumVersion: TLSProtocolVersion = .tls12,
        alpn: [String] = ["http/1.1"],
        ticketKeys: [[UInt8]] = [],
        acmeChallengeDirectory: String? = nil
    ) {
        self.certificates = certificates
        self.minimumVersion = minimumVersion
        self.alpn = alpn
        self.ticketKeys = ticketKeys
        self.acmeChallengeDirectory = acmeChallengeDirectory
    }
}

/// Settings for a TLS client context (tests, and `https://`/`wss://` backends).
public struct TLSClientConfiguration: Sendable, Equatable {
    public enum Verification: Sendable, Equatable {
        /// Verify the peer against this PEM bundle of trusted roots, and its name.
        case trustRoots(path: String)
        /// Verify against the system's default trust store, and the name.
        case systemDefault
        /// No verification: tests only.
        case none
    }

    public var serverName: String?
    public var verification: Verification
    public var alpn: [String]
    public var minimumVersion: TLSProtocolVersion
    public var maximumVersion: TLSProtocolVersion?

    public init(
        serverName: String? = nil,
        verification: Verification = .systemDefault,
        alpn: [String] = ["http/1.1"],
        minimumVersion: TLSProtocolVersion = .tls12,
        maximumVersion: TLSProtocolVersion? = nil
    ) {
        self.serverName = serverName
        self.verification = verification
        self.alpn = alpn
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
    }
}

public enum TLSProtocolVersion: String, Sendable, Equatable, CaseIterable {
    case tls12 = "TLSv1.2"
    case tls13 = "TLSv1.3"
}

/// A TLS failure with OpenSSL's reasons. A struct with a code rather than an enum, so new kinds of
/// failure do not break callers.
public struct TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let fileUnreadable = Code(rawValue: "file_unreadable")
        public static let invalidCertificate = Code(rawValue: "invalid_certificate")
        public static let invalidKey = Code(rawValue: "invalid_key")
        public static let keyMismatch = Code(rawValue: "key_mismatch")
        public static let contextSetup = Code(rawValue: "context_setup")
        public static let handshakeFailed = Code(rawValue: "handshake_failed")
        public static let handshakeTimeout = Code(rawValue: "handshake_timeout")
        public static let protocolError = Code(rawValue: "protocol_error")
        public static let unexpectedEOF = Code(rawValue: "unexpected_eof")
        public static let generation = Code(rawValue: "generation_failed")
    }

    public var code: Code
    public var message: String
    /// OpenSSL's error queue, oldest first.
    public var openSSLErrors: [String]

    public init(code: Code, message: String, openSSLErrors: [String] = []) {
        self.code = code
        self.message = message
        self.openSSLErrors = openSSLErrors
    }

    public var description: String {
        openSSLErrors.isEmpty ? message : "\(message) (\(openSSLErrors.joined(separator: "; ")))"
    }
}
