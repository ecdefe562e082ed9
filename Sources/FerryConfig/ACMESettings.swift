/// `[listen.tls.acme]`: the listener's default certificate is obtained and renewed from an ACME
/// CA (RFC 8555) by the master.
public struct ACMESettings: Sendable, Equatable {
    public enum Challenge: String, Sendable, Equatable, CaseIterable {
        case tlsALPN01 = "tls-alpn-01"
        case http01 = "http-01"
    }

    /// The CA's directory URL (https, unless `testCA`).
    public var directory: String
    public var email: String?
    /// The names on the certificate; from the routes' exact `hosts` when not listed.
    public var names: [String]
    /// In the order tried.
    public var challenges: [Challenge]
    /// A PEM file of roots trusted for the directory's HTTPS (a test CA such as Pebble).
    public var directoryCA: String?
    /// `test_ca = true`: a test CA, whose directory may be plain http.
    public var testCA: Bool
    /// The first retry after a failed order; doubles with every failure in a row, at most 12 h.
    public var retry: Duration
    /// External Account Binding (RFC 8555 §7.3.4): `eab_kid` and the MAC key `eab_hmac_key`
    /// (base64url, as CAs hand it out), when the CA binds accounts to a customer account.
    public var externalAccount: ExternalAccount?

    public struct ExternalAccount: Sendable, Equatable {
        public var keyID: String
        public var macKey: [UInt8]
    }

    public init(
        directory: String, email: String? = nil, names: [String] = [],
        challenges: [Challenge] = [.tlsALPN01, .http01], directoryCA: String? = nil, testCA: Bool = false,
        retry: Duration = .seconds(60)
    ) {
        self.directory = directory
        self.email = email
        self.names = names
        self.challenges = challenges
        self.directoryCA = directoryCA
        self.testCA = testCA
        self.retry = retry
    }

    /// Where the master writes the answers to pending challenges and the workers read them.
    public static func challengeDirectory(stateDirectory: String) -> String {
        "\(stateDirectory)/acme/challenges"
    }

    /// Where an ACME certificate lives when the listener names no files.
    public static func defaultPaths(stateDirectory: String, listener: String) -> (certificate: String, key: String) {
        let directory = "\(stateDirectory)/acme/certificates/\(listener)"
        return ("\(directory)/fullchain.pem", "\(directory)/key.pem")
    }
}

extension FerryConfiguration {
    /// Whether any listener gets its certificate from ACME (then every TLS listener answers
    /// TLS-ALPN-01 and every plain listener HTTP-01 from the challenge directory).
    public var usesACME: Bool { listeners.contains { $0.tls?.acme != nil } }

    public var acmeChallengeDirectory: String? {
        usesACME ? ACMESettings.challengeDirectory(stateDirectory: master.stateDirectory) : nil
    }
}
