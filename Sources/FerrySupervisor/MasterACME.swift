import FerryACME
import FerryConfig
import Foundation

#if canImport(Glibc)
    import Glibc
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
#endif

/// The master's side of ACME: the configuration's `[listen.tls.acme]` tables become the
/// manager's certificate list (at boot and on every reload); the manager runs as a task of its
/// own and installs new pairs where the listeners point, and the certificate watch applies them
/// in place. The account key stays in the master.
extension Master {
    static func acmeSpecs(_ configuration: FerryConfiguration) -> [ACMECertificateSpec] {
        configuration.listeners.compactMap { listener in
            guard let tls = listener.tls, let acme = tls.acme, let first = tls.certificates.first else { return nil }
            return ACMECertificateSpec(
                id: listener.name, names: acme.names, directoryURL: acme.directory,
                contact: acme.email.map { ["mailto:\($0)"] } ?? [], termsAgreed: true,
                challenges: acme.challenges.compactMap { ACMEChallengeKind(rawValue: $0.rawValue) },
                trustRoots: acme.directoryCA, certificatePath: first.certificatePath, keyPath: first.keyPath,
                retryBase: acme.retry,
                externalAccount: acme.externalAccount.map { .init(keyID: $0.keyID, macKey: $0.macKey) })
        }
    }

    /// Starts the manager on the first configuration with ACME; hands later ones their list.
    func applyACME() {
        let specs = Self.acmeSpecs(configuration)
        if let acme {
            acme.manager.update(specs)
            return
        }
        guard !specs.isEmpty else { return }
        let manager = ACMEManager(
            stateDirectory: configuration.master.stateDirectory,
            challengeDirectory: ACMESettings.challengeDirectory(stateDirectory: configuration.master.stateDirectory),
            specs: specs, owner: Self.workerOwner(configuration), logger: logger)
        acme = (manager, Task.detached { await manager.run() })
    }

    func acmeStatus(listener: String) -> ACMEStatus? {
        guard let state = acme?.manager.status.first(where: { $0.id == listener }) else { return nil }
        return ACMEStatus(
            state: state.state, directory: state.directory,
            lastAttempt: state.lastAttempt?.timeIntervalSince1970, lastError: state.lastError,
            nextAttempt: state.nextAttempt?.timeIntervalSince1970, lastIssuanceSeconds: state.lastIssuanceSeconds)
    }

    /// The workers' user and group when the master runs as root and drops them to another.
    static func workerOwner(_ configuration: FerryConfiguration) -> (uid_t, gid_t)? {
        guard getuid() == 0, let user = configuration.master.user, let account = getpwnam(user) else { return nil }
        var gid = account.pointee.pw_gid
        if let group = configuration.master.group, let entry = getgrnam(group) { gid = entry.pointee.gr_gid }
        return (account.pointee.pw_uid, gid)
    }
}
