import FerryConfig
import FerryTLS
import Foundation
import Logging

/// Certificates from files reload by themselves: the master checks the listeners' certificate and
/// key files on every tick; once a change has held still for a tick (a renewal tool writes the two
/// files one after the other) and the pair is usable (readable, key matching, chain in order), the
/// current configuration is applied in place again, so new handshakes get the new certificate and
/// no connection is closed. A pair that is not usable is reported and the old certificate keeps
/// serving.
struct CertificateWatch {
    /// Path → its stamp as last applied (or found at start).
    private var applied: [String: FileStamp?] = [:]
    /// Path → the stamp of a change seen on the previous tick, not yet applied.
    private var pending: [String: FileStamp?] = [:]
    /// The stamps of a change that was refused: not reported again until the files change again.
    private var refused: [String: FileStamp?] = [:]

    static func paths(_ configuration: FerryConfiguration) -> [String] {
        configuration.listeners.compactMap(\.tls).flatMap {
            $0.certificates.flatMap { [$0.certificatePath, $0.keyPath] }
        }
    }

    /// Starts over from the files as they are (start, and after every reload).
    mutating func reset(_ configuration: FerryConfiguration) {
        applied = Dictionary(
            Self.paths(configuration).map { ($0, FileStamp(path: $0)) }, uniquingKeysWith: { a, _ in a })
        pending = [:]
        refused = [:]
    }

    enum Decision: Equatable {
        case none
        case apply
        case refuse(String)
    }

    /// Called on each tick: whether the files changed and settled, and whether they can be used.
    mutating func check(_ configuration: FerryConfiguration) -> Decision {
        var current: [String: FileStamp?] = [:]
        for path in Self.paths(configuration) { current[path] = FileStamp(path: path) }
        let changed = current.filter { applied[$0.key] != $0.value }
        guard !changed.isEmpty else {
            pending = [:]
            return .none
        }
        // Settled: the same change as on the previous tick.
        guard changed == pending else {
            pending = changed
            return .none
        }
        pending = [:]
        if changed == refused { return .none }
        var problems: [String] = []
        for listener in configuration.listeners {
            for certificate in listener.tls?.certificates ?? [] {
                problems += TLSCertificateInspector.inspect(
                    certificatePath: certificate.certificatePath, keyPath: certificate.keyPath
                ).filter { $0.severity == .error }.map(\.description)
            }
        }
        if !problems.isEmpty {
            refused = changed
            return .refuse(problems.joined(separator: "; "))
        }
        applied = current
        refused = [:]
        return .apply
    }
}

extension Master {
    func checkCertificateFiles() {
        guard inPlaceReload == nil, reloadInProgress == nil, !stopping else { return }
        switch certificateWatch.check(configuration) {
        case .none:
            return
        case .refuse(let reason):
            logger.error(
                "certificate files changed but cannot be used; the certificates in use keep serving",
                metadata: ["problems": "\(reason)"])
        case .apply:
            logger.notice("certificate files changed; applying them in place")
            applyInPlace(summary: "certificate files changed")
        }
    }
}
