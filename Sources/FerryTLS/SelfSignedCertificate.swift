internal import COpenSSL

#if canImport(Glibc)
    import Glibc
#endif

/// The embedded default's certificate: generated in-process on first start, reused afterwards.
public enum SelfSignedCertificate {
    public static let subjectAltNames = "DNS:localhost,IP:127.0.0.1,IP:::1"

    /// Generates an ECDSA P-256 key and a self-signed certificate (SAN localhost, 127.0.0.1, ::1,
    /// one year) unless both files already exist. Files are written to temporary names and renamed
    /// into place, key first, so a concurrent reader never sees half a pair; the key is mode 0600.
    /// - Returns: true when a new pair was generated.
    ///   - names: DNS names for the certificate instead of localhost and the loopback addresses
    ///     (an ACME certificate's stand-in until the CA issues the real one).
    @discardableResult
    public static func ensure(certificatePath: String, keyPath: String, names: [String] = []) throws -> Bool {
        if access(certificatePath, F_OK) == 0 && access(keyPath, F_OK) == 0 { return false }
        for path in [certificatePath, keyPath] { try makeParentDirectories(of: path) }
        let suffix = ".tmp-\(getpid())"
        let temporaryCertificate = certificatePath + suffix
        let temporaryKey = keyPath + suffix
        ERR_clear_error()
        guard ferry_write_self_signed(
                temporaryCertificate, temporaryKey, names.first ?? "localhost",
                names.isEmpty ? subjectAltNames : names.map { "DNS:\($0)" }.joined(separator: ","), 365) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryCertificate)
            unlink(temporaryKey)
            let queue = openSSLErrorQueue()
            throw TLSError(
                code: .generation, message: "cannot generate a self-signed certificate at \(certificatePath)",
                openSSLErrors: queue.isEmpty ? [reason] : queue)
        }
        guard rename(temporaryKey, keyPath) == 0, rename(temporaryCertificate, certificatePath) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryCertificate)
            unlink(temporaryKey)
            throw TLSError(code: .generation, message: "cannot install \(certificatePath): \(reason)")
        }
        return true
    }

    static func makeParentDirectories(of path: String) throws {
        var components = path.split(separator: "/", omittingEmptySubsequences: true).dropLast()
        var current = path.hasPrefix("/") ? "" : "."
        while let next = components.first {
            components = components.dropFirst()
            current += "/\(next)"
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw TLSError(
                    code: .generation, message: "cannot create \(current): \(String(cString: strerror(errno)))")
            }
        }
    }
}
