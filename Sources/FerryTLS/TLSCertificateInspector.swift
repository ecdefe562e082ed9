internal import COpenSSL

#if canImport(Glibc)
    import Glibc
#endif

/// Checks a certificate chain and key the way `ferry check` reports them: with the file and
/// OpenSSL's reason, never a crash.
public enum TLSCertificateInspector {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public enum Severity: String, Sendable { case error, warning }
        public var severity: Severity
        /// The file the problem is in.
        public var file: String
        public var message: String

        public var description: String { "\(file): \(severity.rawValue): \(message)" }
    }

    /// `ferry check` warns about a leaf certificate expiring sooner than this.
    public static let expiryWarningDays = 14

    public static func inspect(certificatePath: String, keyPath: String) -> [Problem] {
        var problems: [Problem] = []
        let now = Double(time(nil))
        func error(_ file: String, _ message: String) {
            problems.append(Problem(severity: .error, file: file, message: message))
        }
        func warning(_ file: String, _ message: String) {
            problems.append(Problem(severity: .warning, file: file, message: message))
        }

        ERR_clear_error()
        var chain = [OpaquePointer?](repeating: nil, count: 16)
        let count = Int(ferry_read_certificates(certificatePath, &chain, Int32(chain.count)))
        defer { for certificate in chain.prefix(max(count, 0)) { X509_free(certificate) } }
        if count < 0 {
            error(certificatePath, "cannot read the certificate: \(String(cString: strerror(errno)))")
        } else if count == 0 {
            error(certificatePath, "no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")
        }

        ERR_clear_error()
        let key = ferry_read_private_key(keyPath)
        defer { EVP_PKEY_free(key) }
        if key == nil {
            let queue = openSSLErrorQueue()
            if queue.isEmpty {
                error(keyPath, "cannot read the private key: \(String(cString: strerror(errno)))")
            } else {
                error(keyPath, "not a PEM private key (\(queue.joined(separator: "; ")))")
            }
        }
        guard count > 0, let leaf = chain[0] else { return problems }

        if let key, X509_check_private_key(leaf, key) != 1 {
            ERR_clear_error()
            error(keyPath, "the private key does not match the certificate in \(certificatePath)")
        }
        for (index, certificate) in chain.prefix(count).enumerated() {
            guard let certificate else { continue }
            let role = index == 0 ? "the certificate" : "chain certificate \(index + 1)"
            if X509_cmp_current_time(X509_getm_notAfter(certificate)) < 0 {
                warning(certificatePath, "\(role) (\(subject(certificate))) has expired")
            } else if index == 0, case let days = (Double(ferry_X509_not_after(certificate)) - now) / 86400,
                days < Double(expiryWarningDays)
            {
                warning(
                    certificatePath,
                    "\(role) (\(subject(certificate))) expires in \(Int(days.rounded(.down))) days: renew it")
            } else if X509_cmp_current_time(X509_getm_notBefore(certificate)) > 0 {
                warning(certificatePath, "\(role) (\(subject(certificate))) is not valid yet")
            }
        }
        for index in 0..<(count - 1) {
            guard let subjectCertificate = chain[index], let issuer = chain[index + 1] else { continue }
            if X509_check_issued(issuer, subjectCertificate) != X509_V_OK {
                error(
                    certificatePath,
                    "chain out of order: certificate \(index + 2) (\(subject(issuer))) did not issue certificate "
                        + "\(index + 1) (\(subject(subjectCertificate))); put the leaf first, then each issuer")
            }
        }
        ERR_clear_error()
        return problems
    }

    /// Whether the leaf certificate in `certificatePath` is valid for `name` (a DNS name, or an IP
    /// address literal, brackets allowed), as a client verifying it would decide; nil when the
    /// file cannot be read.
    public static func covers(certificatePath: String, name: String) -> Bool? {
        var chain = [OpaquePointer?](repeating: nil, count: 16)
        let count = Int(ferry_read_certificates(certificatePath, &chain, Int32(chain.count)))
        defer { for certificate in chain.prefix(max(count, 0)) { X509_free(certificate) } }
        ERR_clear_error()
        guard count > 0, let leaf = chain[0] else { return nil }
        let address = name.hasPrefix("[") ? String(name.dropFirst().dropLast()) : name
        if address.contains(":") || address.allSatisfy({ $0.isNumber || $0 == "." }) {
            return X509_check_ip_asc(leaf, address, 0) == 1
        }
        return X509_check_host(leaf, name, name.utf8.count, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS), nil) == 1
    }

    /// What the status page shows of a certificate: its leaf's names, issuer and expiry.
    public struct Summary: Sendable, Equatable {
        public var subject: String
        public var issuer: String
        /// subjectAltName DNS names and IP addresses.
        public var names: [String]
        /// Unix seconds.
        public var notAfter: Double
    }

    /// The leaf of `certificatePath`; nil when the file holds no readable certificate.
    public static func summarize(certificatePath: String) -> Summary? {
        var chain = [OpaquePointer?](repeating: nil, count: 16)
        let count = Int(ferry_read_certificates(certificatePath, &chain, Int32(chain.count)))
        defer { for certificate in chain.prefix(max(count, 0)) { X509_free(certificate) } }
        ERR_clear_error()
        guard count > 0, let leaf = chain[0] else { return nil }
        var buffer = [CChar](repeating: 0, count: 4096)
        ferry_X509_alt_names(leaf, &buffer, buffer.count)
        let names = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Summary(
            subject: subject(leaf), issuer: name(X509_get_issuer_name(leaf)),
            names: names.split(separator: ",").map { canonicalAddress(String($0)) },
            notAfter: Double(ferry_X509_not_after(leaf)))
    }

    /// An IPv6 literal in its short form (`::1`, not `0:0:0:0:0:0:0:1`); anything else unchanged.
    private static func canonicalAddress(_ name: String) -> String {
        guard name.contains(":") else { return name }
        var address = in6_addr()
        guard inet_pton(AF_INET6, name, &address) == 1 else { return name }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return name }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func subject(_ certificate: OpaquePointer) -> String {
        name(X509_get_subject_name(certificate))
    }

    private static func name(_ name: OpaquePointer?) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard X509_NAME_oneline(name, &buffer, Int32(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
