internal import COpenSSL

/// Which OpenSSL Ferry runs with: the shared library loaded at run time (the distribution's, with
/// its security updates) and the headers it was built against.
public enum TLSLibrary {
    /// "OpenSSL 3.0.19 27 Jan 2026", as the loaded libcrypto reports it.
    public static var runtimeVersion: String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }

    /// The headers' version text at build time.
    public static var buildVersion: String { String(cString: ferry_openssl_build_version_text()) }
}
