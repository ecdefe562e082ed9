internal import COpenSSL

#if canImport(Glibc)
    import Glibc
#endif

/// A configured OpenSSL `SSL_CTX` (server or client), shared by every connection of a worker.
///
/// An `SSL_CTX` is safe to share across threads once configured, so this type is `Sendable`; each
/// connection's `SSL` object stays on its channel's event loop. Building a context reads and checks
/// the certificate files: a reload that fails to build a new one simply keeps using the old one.
public final class TLSContext: @unchecked Sendable {
    enum Role {
        case server
        case client(TLSClientConfiguration)
    }

    let role: Role
    /// The default context; SNI may switch a connection to one of `sniContexts`.
    let context: OpaquePointer
    /// Additional certificates selected by SNI, each in its own `SSL_CTX`.
    let sniContexts: [(names: [String], context: OpaquePointer)]
    /// The listener's session ticket keys when the configuration names them (nil: OpenSSL's own
    /// per-process keys). Set once, before the context serves.
    public private(set) var ticketKeys: TLSTicketKeys?
    /// ALPN protocols in wire format; OpenSSL's select callback reads them, so they live as long as the context.
    private let alpnWire: UnsafeMutableBufferPointer<UInt8>
    /// TLS-ALPN-01 challenge certificates, when the configuration uses ACME.
    let acmeChallengeDirectory: String?
    /// The protocol a TLS-ALPN-01 validation negotiates; the connection ends after the handshake.
    public static let acmeALPN = "acme-tls/1"

    public var isServer: Bool {
        if case .server = role { return true }
        return false
    }

    private init(
        role: Role, context: OpaquePointer, sni: [(names: [String], context: OpaquePointer)], alpn: [String],
        acmeChallengeDirectory: String? = nil
    ) {
        self.role = role
        self.acmeChallengeDirectory = acmeChallengeDirectory
        self.context = context
        self.sniContexts = sni
        let wire = Self.alpnWireFormat(alpn)
        alpnWire = .allocate(capacity: max(wire.count, 1))
        _ = alpnWire.initialize(from: wire)
        if wire.isEmpty { alpnWire[0] = 0 }
    }

    deinit {
        SSL_CTX_free(context)
        for (_, sni) in sniContexts { SSL_CTX_free(sni) }
        alpnWire.deallocate()
    }

    /// A server context with every certificate loaded and checked against its key.
    public static func server(_ configuration: TLSServerConfiguration) throws -> TLSContext {
        guard let first = configuration.certificates.first else {
            throw TLSError(code: .contextSetup, message: "a TLS listener needs at least one certificate")
        }
        let ticketKeys = try configuration.ticketKeys.isEmpty ? nil : TLSTicketKeys(configuration.ticketKeys)
        let main = try makeServerContext(first, configuration)
        var sni: [(names: [String], context: OpaquePointer)] = []
        do {
            for certificate in configuration.certificates.dropFirst() {
                sni.append(
                    (certificate.serverNames.map { $0.lowercased() }, try makeServerContext(certificate, configuration))
                )
            }
        } catch {
            SSL_CTX_free(main)
            for (_, context) in sni { SSL_CTX_free(context) }
            throw error
        }
        let tls = TLSContext(
            role: .server, context: main, sni: sni, alpn: configuration.alpn,
            acmeChallengeDirectory: configuration.acmeChallengeDirectory)
        tls.ticketKeys = ticketKeys
        let opaque = Unmanaged.passUnretained(tls).toOpaque()
        for context in [main] + sni.map(\.context) {
            SSL_CTX_set_alpn_select_cb(context, alpnSelectCallback, opaque)
            ticketKeys?.install(on: context)
        }
        if !sni.isEmpty {
            ferry_SSL_CTX_set_tlsext_servername_callback(main, serverNameCallback)
            ferry_SSL_CTX_set_tlsext_servername_arg(main, opaque)
        }
        return tls
    }

    /// A client context (tests, and TLS to backends).
    public static func client(_ configuration: TLSClientConfiguration) throws -> TLSContext {
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw TLSError(code: .contextSetup, message: "SSL_CTX_new failed", openSSLErrors: openSSLErrorQueue())
        }
        ferry_SSL_CTX_set_min_proto_version(context, configuration.minimumVersion.openSSLVersion)
        if let maximum = configuration.maximumVersion {
            ferry_SSL_CTX_set_max_proto_version(context, maximum.openSSLVersion)
        }
        ferry_SSL_CTX_set_mode(context, ferry_SSL_MODE_RELEASE_BUFFERS() | ferry_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER())
        switch configuration.verification {
        case .none:
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        case .systemDefault:
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            SSL_CTX_set_default_verify_paths(context)
        case .trustRoots(let path):
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            guard SSL_CTX_load_verify_locations(context, path, nil) == 1 else {
                SSL_CTX_free(context)
                throw TLSError(
                    code: .fileUnreadable, message: "cannot load trust roots from \(path)",
                    openSSLErrors: openSSLErrorQueue())
            }
        }
        let wire = alpnWireFormat(configuration.alpn)
        if !wire.isEmpty {
            _ = wire.withUnsafeBufferPointer { SSL_CTX_set_alpn_protos(context, $0.baseAddress, UInt32($0.count)) }
        }
        return TLSContext(role: .client(configuration), context: context, sni: [], alpn: configuration.alpn)
    }

    private static func makeServerContext(
        _ certificate: TLSServerConfiguration.Certificate, _ configuration: TLSServerConfiguration
    ) throws -> OpaquePointer {
        guard let context = SSL_CTX_new(TLS_server_method()) else {
            throw TLSError(code: .contextSetup, message: "SSL_CTX_new failed", openSSLErrors: openSSLErrorQueue())
        }
        var ok = false
        defer { if !ok { SSL_CTX_free(context) } }
        ferry_SSL_CTX_set_min_proto_version(context, configuration.minimumVersion.openSSLVersion)
        SSL_CTX_set_options(
            context,
            ferry_SSL_OP_NO_RENEGOTIATION() | ferry_SSL_OP_NO_COMPRESSION() | ferry_SSL_OP_CIPHER_SERVER_PREFERENCE())
        // Released buffers keep an idle TLS connection small (34 KiB of record buffers otherwise).
        ferry_SSL_CTX_set_mode(context, ferry_SSL_MODE_RELEASE_BUFFERS() | ferry_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER())
        SSL_CTX_set_cipher_list(context, "ECDHE+AESGCM:ECDHE+CHACHA20")
        ferry_SSL_CTX_set1_groups_list(context, "X25519:P-256:P-384")
        ferry_SSL_CTX_set_session_cache_mode(context, ferry_SSL_SESS_CACHE_SERVER())
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(context, certificate.certificatePath) == 1 else {
            throw TLSError(
                code: .invalidCertificate, message: "cannot load certificate chain \(certificate.certificatePath)",
                openSSLErrors: openSSLErrorQueue())
        }
        guard SSL_CTX_use_PrivateKey_file(context, certificate.keyPath, SSL_FILETYPE_PEM) == 1 else {
            let errors = openSSLErrorQueue()
            // OpenSSL compares the key with the certificate while loading it.
            if errors.contains(where: { $0.contains("mismatch") }) {
                throw TLSError(
                    code: .keyMismatch,
                    message:
                        "private key \(certificate.keyPath) does not match certificate \(certificate.certificatePath)",
                    openSSLErrors: errors)
            }
            throw TLSError(
                code: .invalidKey, message: "cannot load private key \(certificate.keyPath)", openSSLErrors: errors)
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw TLSError(
                code: .keyMismatch,
                message: "private key \(certificate.keyPath) does not match certificate \(certificate.certificatePath)",
                openSSLErrors: openSSLErrorQueue())
        }
        ok = true
        return context
    }

    /// The SNI context for `name`, if one of the additional certificates names it.
    func context(forServerName name: String) -> OpaquePointer? {
        let lowered = name.lowercased()
        for (names, context) in sniContexts {
            for pattern in names {
                if pattern == lowered { return context }
                if pattern.hasPrefix("*."), let dot = lowered.firstIndex(of: "."),
                    lowered[lowered.index(after: dot)...] == pattern.dropFirst(2)
                {
                    return context
                }
            }
        }
        return nil
    }

    fileprivate func selectALPN(
        _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
        _ outLength: UnsafeMutablePointer<UInt8>?, _ offered: UnsafePointer<UInt8>?, _ offeredLength: UInt32
    ) -> Int32 {
        guard alpnWire[0] != 0, let out, let outLength, let offered else { return SSL_TLSEXT_ERR_NOACK }
        if let acmeChallengeDirectory, let ssl, Int(offeredLength) == Self.acmeALPN.utf8.count + 1,
            let at = Self.find(Self.acmeALPN, in: UnsafeBufferPointer(start: offered, count: Int(offeredLength)))
        {
            // A CA validating TLS-ALPN-01: it offers acme-tls/1 alone (RFC 8737 §3) and must see
            // the challenge certificate for the name it asked for, or no handshake at all. A
            // client offering it among others is not a validation (acme-tls/1 is not in the list
            // it is matched against).
            guard Self.useChallengeCertificate(ssl, directory: acmeChallengeDirectory) else {
                return SSL_TLSEXT_ERR_ALERT_FATAL
            }
            out.pointee = offered + at
            outLength.pointee = UInt8(Self.acmeALPN.utf8.count)
            return SSL_TLSEXT_ERR_OK
        }
        return out.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: 1) { mutableOut in
            let result = SSL_select_next_proto(
                mutableOut, outLength, alpnWire.baseAddress, UInt32(alpnWire.count), offered, offeredLength)
            return result == OPENSSL_NPN_NEGOTIATED ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_ALERT_FATAL
        }
    }

    /// The offset of `name`'s bytes in an ALPN wire list, if the list holds it.
    static func find(_ name: String, in wire: UnsafeBufferPointer<UInt8>) -> Int? {
        let wanted = Array(name.utf8)
        var index = 0
        while index < wire.count {
            let length = Int(wire[index])
            let start = index + 1
            guard start + length <= wire.count else { return nil }
            if length == wanted.count && wire[start..<start + length].elementsEqual(wanted) { return start }
            index = start + length
        }
        return nil
    }

    /// Puts `<directory>/tls-alpn-01/<SNI name>.pem` on the connection; false when the client sent
    /// no usable name or there is no challenge for it. A small file read during the handshake:
    /// validations are rare and come from the CA only.
    static func useChallengeCertificate(_ ssl: OpaquePointer, directory: String) -> Bool {
        guard let raw = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return false }
        let name = String(cString: raw).lowercased()
        guard !name.isEmpty, name.count <= 253, !name.hasPrefix("."),
            name.utf8.allSatisfy({
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x2E
            })
        else { return false }
        let fd = open("\(directory)/tls-alpn-01/\(name).pem", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var pem = [UInt8](repeating: 0, count: 8192)
        let count = pem.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0, count < pem.count else { return false }
        return pem.withUnsafeBytes {
            ferry_SSL_use_pem_pair(ssl, $0.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(count)) == 1
        }
    }

    static func alpnWireFormat(_ protocols: [String]) -> [UInt8] {
        var wire: [UInt8] = []
        for name in protocols where !name.isEmpty && name.utf8.count < 256 {
            wire.append(UInt8(name.utf8.count))
            wire.append(contentsOf: name.utf8)
        }
        return wire
    }
}

extension TLSProtocolVersion {
    var openSSLVersion: Int32 {
        switch self {
        case .tls12: ferry_TLS1_2_VERSION()
        case .tls13: ferry_TLS1_3_VERSION()
        }
    }
}

private let alpnSelectCallback:
    @convention(c) (
        OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
        UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
    ) -> Int32 = { ssl, out, outLength, offered, offeredLength, arg in
        guard let arg else { return SSL_TLSEXT_ERR_NOACK }
        let context = Unmanaged<TLSContext>.fromOpaque(arg).takeUnretainedValue()
        return context.selectALPN(ssl, out, outLength, offered, offeredLength)
    }

private let serverNameCallback:
    @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = {
        ssl, _, arg in
        guard let ssl, let arg, let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
            return SSL_TLSEXT_ERR_OK
        }
        let context = Unmanaged<TLSContext>.fromOpaque(arg).takeUnretainedValue()
        if let selected = context.context(forServerName: String(cString: name)) {
            SSL_set_SSL_CTX(ssl, selected)
        }
        return SSL_TLSEXT_ERR_OK
    }

/// Drains OpenSSL's thread-local error queue into readable strings.
func openSSLErrorQueue() -> [String] {
    var errors: [String] = []
    var buffer = [CChar](repeating: 0, count: 256)
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        ERR_error_string_n(code, &buffer, buffer.count)
        errors.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return errors
}
