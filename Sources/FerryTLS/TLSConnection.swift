internal import COpenSSL
import NIOCore

/// The only code that touches an `SSL*`: one TLS connection over a pair of memory BIOs.
///
/// Ciphertext from the network goes in with `receive(_:)`; ciphertext for the network comes out of
/// `takeOutput(allocator:)`, which must be called after *every* operation, because OpenSSL produces
/// records (TLS 1.3 tickets, KeyUpdate, alerts) during reads and handshakes too. Every operation
/// returns a small result enum; nothing here throws or knows about channels.
final class TLSConnection {
    enum HandshakeResult: Equatable {
        case complete
        /// More bytes from the peer are needed.
        case incomplete
        case failed(TLSError)
    }

    enum ReadResult: Equatable {
        /// Plaintext was appended to the buffer.
        case data
        /// No complete record is buffered.
        case wouldBlock
        /// The peer sent close_notify.
        case closed
        case failed(TLSError)
    }

    enum WriteResult: Equatable {
        case complete
        case failed(TLSError)
    }

    private let ssl: OpaquePointer
    /// Network → OpenSSL.
    private var readBIO: OpaquePointer
    /// OpenSSL → network.
    private var writeBIO: OpaquePointer
    /// Keeps the `SSL_CTX` alive as long as the `SSL`.
    let context: TLSContext

    init(context: TLSContext) throws {
        guard let ssl = SSL_new(context.context) else {
            throw TLSError(code: .contextSetup, message: "SSL_new failed", openSSLErrors: openSSLErrorQueue())
        }
        guard let readBIO = Self.makeMemoryBIO(), let writeBIO = Self.makeMemoryBIO() else {
            SSL_free(ssl)
            throw TLSError(code: .contextSetup, message: "BIO_new failed", openSSLErrors: openSSLErrorQueue())
        }
        SSL_set_bio(ssl, readBIO, writeBIO)  // the SSL now owns both BIOs
        self.ssl = ssl
        self.readBIO = readBIO
        self.writeBIO = writeBIO
        self.context = context
        switch context.role {
        case .server:
            SSL_set_accept_state(ssl)
        case .client(let configuration):
            SSL_set_connect_state(ssl)
            if let name = configuration.serverName {
                ferry_SSL_set_tlsext_host_name(ssl, name)
                if configuration.verification != .none { SSL_set1_host(ssl, name) }
            }
        }
    }

    deinit {
        SSL_free(ssl)
    }

    /// Queues ciphertext received from the peer.
    func receive(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            _ = BIO_write(readBIO, base, Int32(bytes.count))
        }
    }

    func handshake() -> HandshakeResult {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 { return .complete }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .incomplete
        case let code:
            return .failed(failure(.handshakeFailed, "TLS handshake failed", code: code))
        }
    }

    /// Decrypts as much as is buffered into `buffer`, up to its writable capacity.
    func read(into buffer: inout ByteBuffer) -> ReadResult {
        Self.clearErrors()
        var result: Int32 = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1) { bytes -> Int in
            result = SSL_read(ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max))))
            return result > 0 ? Int(result) : 0
        }
        if result > 0 { return .data }
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        default:
            return .failed(failure(.protocolError, "TLS read failed", code: code))
        }
    }

    /// Encrypts all of `buffer`; the records wait in the write BIO for `takeOutput`.
    func write(_ buffer: ByteBuffer) -> WriteResult {
        var failureResult: WriteResult?
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                Self.clearErrors()
                let written = SSL_write(ssl, bytes.baseAddress! + offset, Int32(bytes.count - offset))
                if written > 0 {
                    offset += Int(written)
                    continue
                }
                // With memory BIOs a write never blocks; anything else is fatal.
                let code = SSL_get_error(ssl, written)
                failureResult = .failed(failure(.protocolError, "TLS write failed", code: code))
                return
            }
        }
        return failureResult ?? .complete
    }

    /// SSL_get_error needs an empty error queue before each call into OpenSSL. Failures drain the
    /// queue when they are turned into a `TLSError`, so it is almost always empty already: peeking
    /// is cheaper than ERR_clear_error, which walks every slot (2.3% of a worker's user time in the
    /// WebSocket echo profile, once per record).
    @inline(__always)
    static func clearErrors() {
        if ERR_peek_error() != 0 { ERR_clear_error() }
    }

    /// A memory BIO keeps the largest buffer it ever held: the handshake's flights, or a 16 KiB
    /// record burst of a large response. An empty BIO holding more than this is replaced by a fresh
    /// one, so an idle connection (an idle WebSocket, a keep-alive connection after a download)
    /// does not carry those buffers for its lifetime; small ones are kept, to avoid churn.
    static let retainedBufferLimit = 1024

    /// Replaces empty BIOs that hold more than `retainedBufferLimit` bytes. Cheap when there is
    /// nothing to do (two `BIO_ctrl` calls per BIO); `TLSHandler` runs it shortly after a burst.
    /// Returns the bytes given back.
    @discardableResult
    func trimBuffers() -> Int {
        var released = 0
        if ferry_BIO_pending(readBIO) == 0, ferry_BIO_mem_capacity(readBIO) > Self.retainedBufferLimit,
            let fresh = Self.makeMemoryBIO()
        {
            released += Int(ferry_BIO_mem_capacity(readBIO))
            SSL_set0_rbio(ssl, fresh)  // frees the old one
            readBIO = fresh
        }
        if ferry_BIO_pending(writeBIO) == 0, ferry_BIO_mem_capacity(writeBIO) > Self.retainedBufferLimit,
            let fresh = Self.makeMemoryBIO()
        {
            released += Int(ferry_BIO_mem_capacity(writeBIO))
            SSL_set0_wbio(ssl, fresh)
            writeBIO = fresh
        }
        return released
    }

    /// Whether either memory BIO holds more than `retainedBufferLimit` (two `BIO_ctrl` calls).
    var holdsLargeBuffers: Bool {
        ferry_BIO_mem_capacity(readBIO) > Self.retainedBufferLimit
            || ferry_BIO_mem_capacity(writeBIO) > Self.retainedBufferLimit
    }

    /// Bytes both memory BIOs keep allocated (for tests of `trimBuffers`).
    var retainedBufferBytes: Int {
        Int(ferry_BIO_mem_capacity(readBIO)) + Int(ferry_BIO_mem_capacity(writeBIO))
    }

    private static func makeMemoryBIO() -> OpaquePointer? {
        guard let bio = BIO_new(BIO_s_mem()) else { return nil }
        // An empty memory BIO must report "retry", not EOF, so that SSL_read says WANT_READ.
        BIO_ctrl(bio, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
        return bio
    }

    /// An upper bound of the plaintext that reading now can produce: plaintext never exceeds the
    /// ciphertext it came from. Lets the reader size its buffer instead of allocating 16 KiB per read.
    var readableBound: Int { Int(ferry_BIO_pending(readBIO)) + Int(SSL_pending(ssl)) }

    /// Queues close_notify.
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// Ciphertext produced so far, or nil.
    func takeOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = Int(ferry_BIO_pending(writeBIO))
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
            Int(max(0, BIO_read(writeBIO, bytes.baseAddress, Int32(pending))))
        }
        return buffer
    }

    /// Whether a read could produce anything: bytes in the read BIO, or a record (processed or
    /// not) inside OpenSSL. False means SSL_read would only say "want read".
    var mayHaveInput: Bool { ferry_BIO_pending(readBIO) > 0 || SSL_has_pending(ssl) == 1 }

    var negotiatedALPN: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    var serverName: String? {
        SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
    }

    var protocolVersion: String {
        String(cString: SSL_get_version(ssl))
    }

    var sessionReused: Bool { SSL_session_reused(ssl) == 1 }

    private func failure(_ code: TLSError.Code, _ message: String, code sslCode: Int32) -> TLSError {
        var errors = openSSLErrorQueue()
        if errors.isEmpty {
            switch sslCode {
            case SSL_ERROR_SYSCALL: errors = ["unexpected end of stream"]
            case SSL_ERROR_SSL: errors = ["protocol error"]
            default: errors = ["SSL error \(sslCode)"]
            }
        }
        return TLSError(code: code, message: message, openSSLErrors: errors)
    }
}
