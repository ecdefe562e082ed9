import FerryConfig
import FerryTLS

/// Certificate checks for `ferry check`, `ferry serve` and reloads, through OpenSSL (FerryTLS):
/// key matches certificate, expiry (a warning), chain order. Self-signed pairs that do not exist
/// yet are generated first (the embedded default's certificate, kept in the state directory).
enum CertificateChecks {
    static func run(_ configuration: FerryConfiguration, fileName: String) -> [ConfigurationDiagnostic] {
        inspect(configuration, fileName: fileName, generate: false)
    }

    static func prepareAndCheck(_ configuration: FerryConfiguration, fileName: String) -> [ConfigurationDiagnostic] {
        inspect(configuration, fileName: fileName, generate: true)
    }

    private static func inspect(_ configuration: FerryConfiguration, fileName: String, generate: Bool)
        -> [ConfigurationDiagnostic]
    {
        var diagnostics: [ConfigurationDiagnostic] = []
        for (index, listener) in configuration.listeners.enumerated() {
            guard let tls = listener.tls else { continue }
            for (certificateIndex, certificate) in tls.certificates.enumerated() {
                let keyPath =
                    certificateIndex == 0
                    ? "listen[\(index + 1)].tls" : "listen[\(index + 1)].tls.sni[\(certificateIndex)]"
                if tls.selfSigned && certificateIndex == 0 {
                    if !generate { continue }
                    do {
                        try SelfSignedCertificate.ensure(
                            certificatePath: certificate.certificatePath, keyPath: certificate.keyPath,
                            names: tls.acme?.names ?? [])
                    } catch {
                        diagnostics.append(
                            .init(
                                severity: .error, file: fileName, line: 1, column: 1, keyPath: keyPath,
                                message: "\(error)"))
                        continue
                    }
                }
                for problem in TLSCertificateInspector.inspect(
                    certificatePath: certificate.certificatePath, keyPath: certificate.keyPath)
                {
                    diagnostics.append(
                        .init(
                            severity: problem.severity == .error ? .error : .warning, file: fileName, line: 1,
                            column: 1,
                            keyPath: keyPath, message: "\(problem.file): \(problem.message)"))
                }
            }
        }
        return diagnostics
    }

    /// `ferry check`: a route host that the certificate its listener would present for it does not
    /// cover (the client would refuse the connection), as warnings at `route[N].hosts`. A
    /// wildcard pattern is checked with one name below it, as a TLS wildcard covers one label.
    static func hostCoverage(_ loaded: LoadedConfiguration) -> [ConfigurationDiagnostic] {
        var diagnostics: [ConfigurationDiagnostic] = []
        let configuration = loaded.configuration
        for (routeIndex, route) in configuration.routes.enumerated() {
            for pattern in route.hosts {
                let name = pattern.hasPrefix("*.") ? "ferry-check" + pattern.dropFirst(1) : pattern
                for (listenerIndex, listener) in configuration.listeners.enumerated() {
                    guard let tls = listener.tls else { continue }
                    let selected = CertificateSelector(tls).index(forServerName: name)
                    let path = tls.certificates[selected].certificatePath
                    // A self-signed default not generated yet, or unreadable (reported elsewhere).
                    guard TLSCertificateInspector.covers(certificatePath: path, name: name) == false else { continue }
                    diagnostics.append(
                        loaded.diagnostic(
                            .warning, "route[\(routeIndex + 1)].hosts",
                            "'\(pattern)' is not covered by the certificate listen[\(listenerIndex + 1)] presents for it "
                                + "(\(path)): clients will refuse the connection; add the name to that certificate, or "
                                + "a [[listen.tls.sni]] certificate whose server_names list it"))
                }
            }
        }
        return diagnostics
    }
}
