internal import COpenSSL

/// The session ticket keys of one TLS listener, shared by its `SSL_CTX`s and replaceable while
/// they serve: a rotation (`ticket_keys` file changed) reaches the next handshake, and connections
/// already established are untouched.
///
/// Each key is 80 bytes (16 name, 32 HMAC-SHA256 key, 32 AES-256-CBC key: the layout of nginx's
/// `ssl_session_ticket_key` files). The first key encrypts new tickets; all of them decrypt, and a
/// client resuming with an older key is given a new ticket under the first.
public final class TLSTicketKeys: @unchecked Sendable {
    public static let keyLength = 80

    let store: UnsafeMutablePointer<ferry_ticket_store>

    public init(_ keys: [[UInt8]]) throws {
        guard let store = ferry_ticket_store_new() else {
            throw TLSError(code: .contextSetup, message: "cannot allocate the session ticket key store")
        }
        self.store = store
        // Thrown after every property is set, so deinit frees the store.
        try replace(with: keys)
    }

    deinit { ferry_ticket_store_free(store) }

    /// Replaces every key at once (the first encrypts from the next handshake on).
    public func replace(with keys: [[UInt8]]) throws {
        guard !keys.isEmpty else {
            throw TLSError(code: .contextSetup, message: "session ticket keys: at least one key is needed")
        }
        if let bad = keys.first(where: { $0.count != Self.keyLength }) {
            throw TLSError(
                code: .contextSetup, message: "session ticket keys must be \(Self.keyLength) bytes, got \(bad.count)")
        }
        var flat = keys.flatMap { $0 }
        defer { for index in flat.indices { flat[index] = 0 } }
        let result = flat.withUnsafeBufferPointer { ferry_ticket_store_set(store, $0.baseAddress, Int32(keys.count)) }
        guard result == 0 else {
            throw TLSError(code: .contextSetup, message: "cannot store the session ticket keys")
        }
    }

    func install(on context: OpaquePointer) {
        _ = ferry_SSL_CTX_use_ticket_store(context, store)
    }
}
