public import Foundation
public import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// One certificate Ferry obtains and renews by itself.
public struct ACMECertificateSpec: Sendable, Equatable {
    /// Names the state directory (`certificates/<id>`); the listener's name.
    public var id: String
    public var names: [String]
    public var directoryURL: String
    /// `mailto:` URLs.
    public var contact: [String]
    public var termsAgreed: Bool
    /// In the order of preference.
    public var challenges: [ACMEChallengeKind]
    /// A PEM file of roots to trust for the directory's HTTPS (a test CA); nil: the system's.
    public var trustRoots: String?
    public var certificatePath: String
    public var keyPath: String
    /// The first retry after a failure; it doubles with each failure in a row.
    public var retryBase: Duration
    /// External Account Binding: the CA's key id and MAC key, when the CA requires it.
    public var externalAccount: ExternalAccount?

    public struct ExternalAccount: Sendable, Equatable {
        public var keyID: String
        public var macKey: [UInt8]

        public init(keyID: String, macKey: [UInt8]) {
            self.keyID = keyID
            self.macKey = macKey
        }
    }

    public init(
        id: String, names: [String], directoryURL: String, contact: [String], termsAgreed: Bool,
        challenges: [ACMEChallengeKind], trustRoots: String?, certificatePath: String, keyPath: String,
        retryBase: Duration, externalAccount: ExternalAccount? = nil
    ) {
        self.externalAccount = externalAccount
        self.id = id
        self.names = names
        self.directoryURL = directoryURL
        self.contact = contact
        self.termsAgreed = termsAgreed
        self.challenges = challenges
        self.trustRoots = trustRoots
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.retryBase = retryBase
    }
}

/// What `ferry status` shows of one ACME certificate.
public struct ACMECertificateState: Sendable, Equatable {
    public var id: String
    public var names: [String]
    public var directory: String
    /// `issued`, `awaiting` (temporary self-signed certificate), `ordering`, or `failing` (a
    /// certificate from the CA keeps serving while renewals fail).
    public var state: String
    public var lastAttempt: Date?
    public var lastError: String?
    public var nextAttempt: Date?
    public var lastIssuanceSeconds: Double?
}

/// Drives every configured ACME certificate from the master: decides when to order
/// (`ACMESchedule`), runs the order (`ACMEIssuance`), installs the pair where the listener's
/// configuration points (the master's certificate watch then applies it in place, so no
/// connection is dropped), and keeps a record per certificate so a restart neither re-registers
/// nor re-orders. The account key never leaves this process.
public final class ACMEManager: Sendable {
    let store: ACMEStore
    let files: ACMEChallengeFiles
    let owner: (uid_t, gid_t)?
    let logger: Logger
    let now: @Sendable () -> Date
    /// How to reach a CA (tests substitute a scripted one); given the roots to trust.
    let makeTransport: @Sendable (String?) -> any ACMETransport
    private let specs: NIOLockedValueBox<[ACMECertificateSpec]>
    private let states = NIOLockedValueBox<[String: ACMECertificateState]>([:])
    /// RFC 9773 windows by directory and certificate id, each kept until it may be asked again.
    private let renewalWindows = NIOLockedValueBox<[String: (window: ACMERenewalInfo.Window?, until: Date)]>([:])

    /// - Parameters:
    ///   - owner: the workers' user and group when they differ from the master's (they read the
    ///     installed key on a reload and the challenge files).
    public init(
        stateDirectory: String, challengeDirectory: String, specs: [ACMECertificateSpec], owner: (uid_t, gid_t)?,
        logger: Logger, now: @escaping @Sendable () -> Date = { Date() },
        makeTransport: @escaping @Sendable (String?) -> any ACMETransport = { ACMEHTTPTransport(trustRoots: $0) }
    ) {
        self.makeTransport = makeTransport
        store = ACMEStore(root: "\(stateDirectory)/acme")
        files = ACMEChallengeFiles(directory: challengeDirectory, owner: owner)
        self.owner = owner
        self.logger = logger
        self.now = now
        self.specs = NIOLockedValueBox(specs)
    }

    /// A reload's new list (orders in flight finish with the old one).
    public func update(_ newSpecs: [ACMECertificateSpec]) {
        specs.withLockedValue { $0 = newSpecs }
        let ids = Set(newSpecs.map(\.id))
        states.withLockedValue { $0 = $0.filter { ids.contains($0.key) } }
    }

    public var status: [ACMECertificateState] {
        states.withLockedValue { Array($0.values) }.sorted { $0.id < $1.id }
    }

    /// Checks every certificate each second and orders those that are due; returns when the task
    /// is cancelled.
    public func run() async {
        var clients: [String: ACMEClient] = [:]
        var transports: [any ACMETransport] = []
        while !Task.isCancelled {
            for spec in specs.withLockedValue({ $0 }) {
                await check(spec, clients: &clients, transports: &transports)
            }
            try? await Task.sleep(for: .seconds(1))
        }
        for transport in transports { await transport.shutdown() }
    }

    /// One look at one certificate: orders it when it is due (the loop's body; tests call it
    /// with a manual clock).
    func check(_ spec: ACMECertificateSpec, clients: inout [String: ACMEClient], transports: inout [any ACMETransport])
        async
    {
        let record: ACMERecord?
        do {
            record = try store.record(id: spec.id)
        } catch {
            // A corrupt record is reported, never overwritten.
            publish(spec, state: "failing", record: nil, next: nil, error: "\(error)")
            return
        }
        let leaf = Self.leaf(spec)
        let current = Self.current(spec, leaf)
        var window: ACMERenewalInfo.Window?
        if case .issued = current, let certID = leaf?.renewalInfoID {
            window = await renewalWindow(spec, certID: certID, clients: &clients, transports: &transports)
        }
        let due = ACMESchedule.nextAttempt(
            current: current, record: record, id: spec.id, retryBase: spec.retryBase, window: window)
        guard due <= now() else {
            publish(spec, state: Self.label(leaf, record), record: record, next: due, error: record?.lastError)
            return
        }
        var updated = record ?? ACMERecord(names: spec.names, directory: spec.directoryURL)
        updated.names = spec.names
        updated.directory = spec.directoryURL
        updated.lastAttempt = now()
        publish(spec, state: "ordering", record: updated, next: nil, error: updated.lastError)
        let started = ContinuousClock.now
        do {
            let client = try await self.client(for: spec, clients: &clients, transports: &transports)
            var issuance = ACMEIssuance(names: spec.names, challenges: spec.challenges, files: files)
            issuance.replaces = window != nil ? leaf?.renewalInfoID : nil
            let issued = try await issuance.run(client)
            let leaf = try ACMECertificates.leaf(ofChain: issued.chainPEM)
            try store.install(
                chain: issued.chainPEM, key: issued.keyPEM, certificatePath: spec.certificatePath,
                keyPath: spec.keyPath, owner: owner)
            let elapsed = ContinuousClock.now - started
            updated.notBefore = leaf.notBefore
            updated.notAfter = leaf.notAfter
            updated.failures = 0
            updated.lastError = nil
            updated.lastIssuanceSeconds =
                Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            logger.notice(
                "ACME certificate installed",
                metadata: [
                    "certificate": "\(spec.id)", "names": "\(spec.names.joined(separator: ","))",
                    "not_after": "\(leaf.notAfter)", "seconds": "\(updated.lastIssuanceSeconds ?? 0)",
                ])
        } catch {
            // The master is stopping (the task is cancelled; the HTTP client may say so in its own
            // words): not a failure of the CA's, nothing to record or back off from.
            if Task.isCancelled || error is CancellationError { return }
            updated.failures += 1
            updated.lastError = "\(error)"
            if case ACMEError.problem(_, let problem) = error, problem.type?.hasSuffix(":accountDoesNotExist") == true {
                clients[spec.directoryURL] = nil
                store.forgetAccount(for: spec.directoryURL)
            }
            logger.error(
                "ACME order failed; the certificate in use keeps serving",
                metadata: [
                    "certificate": "\(spec.id)", "error": "\(error)", "failures": "\(updated.failures)",
                ])
        }
        do { try store.save(updated, id: spec.id) } catch {
            logger.error("cannot save the ACME record", metadata: ["error": "\(error)"])
        }
        let installed = Self.leaf(spec)
        let next = ACMESchedule.nextAttempt(
            current: Self.current(spec, installed), record: updated, id: spec.id, retryBase: spec.retryBase,
            window: updated.failures == 0 ? nil : window)
        publish(spec, state: Self.label(installed, updated), record: updated, next: next, error: updated.lastError)
    }

    /// RFC 9773: the CA's window for the certificate in use, asked again only after the CA's
    /// Retry-After (an hour after a failed request); nil when the CA offers no renewal
    /// information or cannot be asked (the two-thirds rule applies).
    func renewalWindow(
        _ spec: ACMECertificateSpec, certID: String, clients: inout [String: ACMEClient],
        transports: inout [any ACMETransport]
    ) async -> ACMERenewalInfo.Window? {
        let key = "\(spec.directoryURL) \(certID)"
        if let cached = renewalWindows.withLockedValue({ $0[key] }), cached.until > now() { return cached.window }
        var window: ACMERenewalInfo.Window?
        var until = now().addingTimeInterval(3600)
        do {
            let client = try await self.client(for: spec, clients: &clients, transports: &transports)
            if let (info, retryAfter) = try await client.renewalInfo(certID: certID) {
                window = info.suggestedWindow
                until = now().addingTimeInterval(retryAfter)
            } else {
                until = .distantFuture
            }
        } catch {
            logger.warning(
                "ACME renewal information unavailable; renewing at two thirds of the lifetime",
                metadata: ["certificate": "\(spec.id)", "error": "\(error)"])
        }
        renewalWindows.withLockedValue {
            $0 = $0.filter { $0.value.until > now() }; $0[key] = (window, until)
        }
        return window
    }

    /// `awaiting` while no certificate from a CA serves (the temporary self-signed one does),
    /// `failing` while one does and orders fail (it keeps serving until it expires), `issued`.
    static func label(_ leaf: ACMECertificates.Leaf?, _ record: ACMERecord?) -> String {
        guard let leaf, !leaf.selfSigned else { return "awaiting" }
        return (record?.failures ?? 0) > 0 ? "failing" : "issued"
    }

    /// The account (key created, account registered and its URL saved on first use).
    func client(
        for spec: ACMECertificateSpec, clients: inout [String: ACMEClient], transports: inout [any ACMETransport]
    ) async throws -> ACMEClient {
        if let client = clients[spec.directoryURL] { return client }
        let (key, url) = try store.account(for: spec.directoryURL)
        let transport = makeTransport(spec.trustRoots)
        transports.append(transport)
        let client = ACMEClient(directoryURL: spec.directoryURL, transport: transport, key: key, accountURL: url)
        if url == nil {
            let registered = try await client.registerAccount(
                contact: spec.contact, termsAgreed: spec.termsAgreed,
                externalAccount: spec.externalAccount.map { ($0.keyID, $0.macKey) })
            try store.saveAccountURL(registered, for: spec.directoryURL)
            logger.notice(
                "ACME account registered", metadata: ["directory": "\(spec.directoryURL)", "account": "\(registered)"])
        }
        clients[spec.directoryURL] = client
        return client
    }

    /// The leaf of the certificate at the configured path.
    static func leaf(_ spec: ACMECertificateSpec) -> ACMECertificates.Leaf? {
        FileManager.default.contents(atPath: spec.certificatePath).flatMap {
            try? ACMECertificates.leaf(ofChain: String(decoding: $0, as: UTF8.self))
        }
    }

    /// The certificate in use, if it is one from a CA covering every name.
    static func current(_ spec: ACMECertificateSpec, _ leaf: ACMECertificates.Leaf?) -> ACMESchedule.Current {
        guard let leaf, !leaf.selfSigned, Set(spec.names).isSubset(of: Set(leaf.names)) else { return .none }
        return .issued(notBefore: leaf.notBefore, notAfter: leaf.notAfter)
    }

    private func publish(_ spec: ACMECertificateSpec, state: String, record: ACMERecord?, next: Date?, error: String?) {
        let row = ACMECertificateState(
            id: spec.id, names: spec.names, directory: spec.directoryURL, state: state,
            lastAttempt: record?.lastAttempt, lastError: error, nextAttempt: next,
            lastIssuanceSeconds: record?.lastIssuanceSeconds)
        states.withLockedValue { $0[spec.id] = row }
    }
}
