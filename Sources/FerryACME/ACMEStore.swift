import Crypto
public import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What Ferry remembers of one ACME certificate between attempts and restarts (`state.json`).
public struct ACMERecord: Codable, Sendable, Equatable {
    public var names: [String]
    public var directory: String
    public var notBefore: Date?
    public var notAfter: Date?
    public var lastAttempt: Date?
    /// The last attempt's error; nil after a success.
    public var lastError: String?
    /// Attempts failed in a row (the backoff's exponent).
    public var failures: Int
    /// Seconds the last successful issuance took, order to installed files.
    public var lastIssuanceSeconds: Double?

    public init(names: [String], directory: String) {
        self.names = names
        self.directory = directory
        self.failures = 0
    }
}

public struct ACMEStoreError: Error, CustomStringConvertible {
    public var description: String
}

/// The master's ACME state under `<state_dir>/acme` (directories 0700 under 0711 parents, files
/// 0600, every file
/// written to a temporary name and renamed, so a crash leaves the old file or the new one):
///
///     accounts/<directory>/key.pem      the account key (ECDSA P-256), created once
///     accounts/<directory>/account.json the account URL the CA gave it
///     certificates/<id>/state.json      an ACMERecord
///
/// The certificate and key the workers load live where the configuration points (by default
/// `certificates/<id>/fullchain.pem` and `key.pem`). A file that cannot be parsed is an error
/// naming it and is never overwritten.
public struct ACMEStore: Sendable {
    public let root: String

    public init(root: String) {
        self.root = root
    }

    // MARK: Account

    public func accountDirectory(for directoryURL: String) -> String {
        let safe = directoryURL.replacing("https://", with: "").replacing("http://", with: "")
            .map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
        return "\(root)/accounts/\(String(safe))"
    }

    /// The account key for `directoryURL` (created and saved on first use) and the account URL
    /// if the account was registered before.
    public func account(for directoryURL: String) throws -> (key: ACMEAccountKey, url: String?) {
        let directory = accountDirectory(for: directoryURL)
        let keyPath = "\(directory)/key.pem"
        let key: P256.Signing.PrivateKey
        if let text = try readIfPresent(keyPath) {
            do { key = try P256.Signing.PrivateKey(pemRepresentation: text) } catch {
                throw ACMEStoreError(description: "\(keyPath): not a P-256 private key (\(error)); fix or remove it")
            }
        } else {
            key = P256.Signing.PrivateKey()
            try write(key.pemRepresentation + "\n", to: keyPath)
        }
        var url: String?
        let accountPath = "\(directory)/account.json"
        if let text = try readIfPresent(accountPath) {
            guard let data = text.data(using: .utf8),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: String],
                let stored = object["url"]
            else { throw ACMEStoreError(description: "\(accountPath): not an account record; fix or remove it") }
            url = stored
        }
        return (ACMEAccountKey(key), url)
    }

    public func saveAccountURL(_ url: String, for directoryURL: String) throws {
        let data = try JSONSerialization.data(withJSONObject: ["url": url], options: [.withoutEscapingSlashes])
        try write(
            String(decoding: data, as: UTF8.self) + "\n", to: "\(accountDirectory(for: directoryURL))/account.json")
    }

    /// The CA no longer knows the account: the next attempt registers again (same key).
    public func forgetAccount(for directoryURL: String) {
        unlink("\(accountDirectory(for: directoryURL))/account.json")
    }

    // MARK: Certificates

    public func certificateDirectory(id: String) -> String { "\(root)/certificates/\(id)" }

    public func record(id: String) throws -> ACMERecord? {
        let path = "\(certificateDirectory(id: id))/state.json"
        guard let text = try readIfPresent(path) else { return nil }
        do {
            return try Self.decoder.decode(ACMERecord.self, from: Data(text.utf8))
        } catch {
            throw ACMEStoreError(description: "\(path): not a certificate record (\(error)); fix or remove it")
        }
    }

    public func save(_ record: ACMERecord, id: String) throws {
        let data = try Self.encoder.encode(record)
        try write(String(decoding: data, as: UTF8.self) + "\n", to: "\(certificateDirectory(id: id))/state.json")
    }

    /// Installs a new pair where the workers load it: key first, then the chain (the master's
    /// certificate watch applies the pair once both files have settled). `owner`: the workers'
    /// user and group, when they are not the master's, so they can read the key on a reload.
    public func install(chain: String, key: String, certificatePath: String, keyPath: String, owner: (uid_t, gid_t)?)
        throws
    {
        try write(key, to: keyPath, owner: owner)
        try write(chain, to: certificatePath, owner: owner)
    }

    // MARK: Files

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    func readIfPresent(_ path: String) throws -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ACMEStoreError(description: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Writes `text` to a temporary file beside `path` (mode 0600), flushes it and renames it
    /// into place; parent directories are created 0700.
    public func write(_ text: String, to path: String, owner: (uid_t, gid_t)? = nil) throws {
        try Self.makeDirectories(String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]), owner: owner)
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.failure("cannot create \(temporary)") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        if let owner { _ = fchown(fd, owner.0, owner.1) }
        close(fd)
        guard written == bytes.count, synced == 0 else {
            unlink(temporary)
            throw Self.failure("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw Self.failure("cannot rename \(temporary) to \(path)")
        }
    }

    /// Creates `path` and its missing parents: parents 0711 (others may pass through to a file
    /// whose name they know, not list), `path` itself 0700 and, when given, owned by `owner`.
    static func makeDirectories(_ path: String, owner: (uid_t, gid_t)? = nil) throws {
        var current = ""
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated() {
            current += "/\(component)"
            let last = index == components.count - 1
            if mkdir(current, last ? 0o700 : 0o711) == 0 {
                if last, let owner { _ = chown(current, owner.0, owner.1) }
            } else if errno != EEXIST {
                throw failure("cannot create \(current)")
            }
        }
    }

    static func failure(_ what: String) -> ACMEStoreError {
        ACMEStoreError(description: "\(what): \(String(cString: strerror(errno)))")
    }
}
