public import Foundation

/// What went wrong talking to the ACME server, in words an operator can act on.
public enum ACMEError: Error, CustomStringConvertible, Equatable {
    /// The server answered with a problem document.
    case problem(status: Int, ACMEProblem)
    /// An answer that is not what RFC 8555 promises (missing header, bad JSON).
    case protocolViolation(String)
    /// A challenge or an order the server marked invalid.
    case invalid(String)
    /// An order that did not become ready/valid in time.
    case timedOut(String)

    public var description: String {
        switch self {
        case .problem(let status, let problem): "ACME server answered \(status): \(problem)"
        case .protocolViolation(let reason): "unexpected answer from the ACME server: \(reason)"
        case .invalid(let reason): reason
        case .timedOut(let reason): reason
        }
    }
}

/// RFC 8555's requests, one account key, one directory. Nonces are taken from every answer's
/// `Replay-Nonce` (a fresh one from newNonce when none is left) and a `badNonce` is retried.
public actor ACMEClient {
    public let directoryURL: String
    let transport: any ACMETransport
    let key: ACMEAccountKey
    private var directory: ACMEDirectory?
    private var nonces: [String] = []
    /// The account URL once the account exists (`kid`).
    public private(set) var accountURL: String?

    public init(directoryURL: String, transport: any ACMETransport, key: ACMEAccountKey, accountURL: String? = nil) {
        self.directoryURL = directoryURL
        self.transport = transport
        self.key = key
        self.accountURL = accountURL
    }

    public func loadDirectory() async throws -> ACMEDirectory {
        if let directory { return directory }
        let response = try await transport.get(directoryURL)
        guard response.status == 200 else {
            throw ACMEError.protocolViolation("directory \(directoryURL) answered \(response.status)")
        }
        let loaded = try decode(ACMEDirectory.self, response.body, what: "directory")
        directory = loaded
        return loaded
    }

    /// Registers the account (or finds the existing one for this key: newAccount answers 200 with
    /// its URL) and remembers its URL.
    /// - Parameter externalAccount: the CA's key id and MAC key when it binds accounts to an
    ///   existing customer account (RFC 8555 §7.3.4: ZeroSSL, company CAs).
    @discardableResult
    public func registerAccount(
        contact: [String], termsAgreed: Bool, externalAccount: (keyID: String, macKey: [UInt8])? = nil
    ) async throws -> String {
        if let accountURL { return accountURL }
        let directory = try await loadDirectory()
        var request = NewAccountRequest(contact: contact, termsOfServiceAgreed: termsAgreed)
        if let externalAccount {
            request.externalAccountBinding = try ACMERawJSON(
                try key.externalAccountBinding(
                    keyID: externalAccount.keyID, macKey: externalAccount.macKey, url: directory.newAccount))
        }
        let payload = try JSONEncoder().encode(request)
        let response = try await post(directory.newAccount, payload: payload, identity: .jwk)
        guard let location = response.header("Location") else {
            throw ACMEError.protocolViolation("newAccount answered without a Location")
        }
        accountURL = location
        return location
    }

    public func newOrder(names: [String], replaces: String? = nil) async throws -> (url: String, order: ACMEOrder) {
        let directory = try await loadDirectory()
        let payload = try JSONEncoder().encode(
            NewOrderRequest(identifiers: names.map(ACMEIdentifier.dns), replaces: replaces))
        let response = try await post(directory.newOrder, payload: payload)
        guard let location = response.header("Location") else {
            throw ACMEError.protocolViolation("newOrder answered without a Location")
        }
        return (location, try decode(ACMEOrder.self, response.body, what: "order"))
    }

    /// POST-as-GET of an order, authorization or challenge.
    public func fetch<T: Decodable>(_ type: T.Type, at url: String) async throws -> T {
        try decode(type, try await post(url, payload: nil).body, what: "\(T.self)")
    }

    /// Tells the server the challenge is ready to be validated (an empty JSON object).
    public func respond(toChallenge url: String) async throws {
        _ = try await post(url, payload: Data("{}".utf8))
    }

    public func finalize(_ url: String, csrDER: [UInt8]) async throws -> ACMEOrder {
        let payload = try JSONEncoder().encode(FinalizeRequest(csr: Base64URL.encode(csrDER)))
        return try decode(ACMEOrder.self, try await post(url, payload: payload).body, what: "order")
    }

    /// The certificate chain, PEM (`application/pem-certificate-chain`).
    public func downloadCertificate(_ url: String) async throws -> String {
        let response = try await post(url, payload: nil)
        let text = String(decoding: response.body, as: UTF8.self)
        guard text.contains("-----BEGIN CERTIFICATE-----") else {
            throw ACMEError.protocolViolation("the certificate URL did not answer with a PEM chain")
        }
        return text
    }

    /// RFC 9773: the CA's suggested renewal window for the certificate `certID` names, and how
    /// long to wait before asking again (its Retry-After, else 6 hours); nil when the CA does not
    /// offer renewal information.
    public func renewalInfo(certID: String) async throws -> (info: ACMERenewalInfo, retryAfter: TimeInterval)? {
        guard let base = try await loadDirectory().renewalInfo else { return nil }
        let response = try await transport.get(base.hasSuffix("/") ? base + certID : "\(base)/\(certID)")
        guard response.status == 200 else {
            throw ACMEError.protocolViolation("renewalInfo answered \(response.status)")
        }
        let info: ACMERenewalInfo
        do { info = try ACMERenewalInfo.decoder.decode(ACMERenewalInfo.self, from: response.body) } catch {
            throw ACMEError.protocolViolation("renewalInfo: \(error)")
        }
        let retryAfter = response.header("Retry-After").flatMap(TimeInterval.init).map { min(max($0, 60), 86400) }
        return (info, retryAfter ?? 6 * 3600)
    }

    // MARK: - Requests

    func post(_ url: String, payload: Data?, identity: ACMEAccountKey.Identity? = nil) async throws
        -> ACMEHTTPResponse
    {
        let signer: ACMEAccountKey.Identity
        if let identity {
            signer = identity
        } else if let accountURL {
            signer = .kid(accountURL)
        } else {
            throw ACMEError.protocolViolation("no account yet")
        }
        var attempts = 0
        while true {
            attempts += 1
            let body = try key.sign(payload: payload, url: url, nonce: try await nextNonce(), identity: signer)
            let response = try await transport.post(url, jose: body)
            if let nonce = response.header("Replay-Nonce") { nonces.append(nonce) }
            if (200..<300).contains(response.status) { return response }
            let problem =
                (try? JSONDecoder().decode(ACMEProblem.self, from: response.body))
                ?? ACMEProblem(type: nil, detail: String(decoding: response.body.prefix(200), as: UTF8.self))
            // A rejected nonce is retried with the fresh one the answer carried (§6.5).
            if problem.type == "urn:ietf:params:acme:error:badNonce" && attempts < 5 { continue }
            throw ACMEError.problem(status: response.status, problem)
        }
    }

    private func nextNonce() async throws -> String {
        if !nonces.isEmpty { return nonces.removeLast() }
        let directory = try await loadDirectory()
        let response = try await transport.head(directory.newNonce)
        guard let nonce = response.header("Replay-Nonce") else {
            throw ACMEError.protocolViolation("newNonce answered \(response.status) without a Replay-Nonce")
        }
        return nonce
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw ACMEError.protocolViolation("\(what): \(error)")
        }
    }
}
