import FerryConfig

/// Deeper certificate checks for `ferry check` and reloads (key matches certificate, expiry, chain
/// order), done by FerryTLS through OpenSSL. Until FerryTLS lands, only FerryConfig's
/// readability checks apply and this returns nothing.
enum CertificateChecks {
    static func run(_ configuration: FerryConfiguration, fileName: String) -> [ConfigurationDiagnostic] {
        []
    }
}
