import Foundation

extension SectionParser {
    func parseACME(_ table: TableReader) -> ACMESettings? {
        let directory = table.requiredString("directory", example: "\"https://acme-v02.api.letsencrypt.org/directory\"")
        let email = table.string("email")
        let agreed = table.bool("agree_terms")
        let names = table.stringArray("names")
        let challenges = table.stringArray("challenges")
        let directoryCA = table.string("directory_ca")
        let testCA = table.bool("test_ca") ?? false
        let retry = table.duration("retry", minimum: .seconds(1))
        let eabKeyID = table.string("eab_kid")
        let eabMACKey = table.string("eab_hmac_key")
        table.finish()
        guard let directory else { return nil }
        var settings = ACMESettings(directory: directory, email: email, testCA: testCA)
        if !(directory.hasPrefix("https://") || (testCA && directory.hasPrefix("http://"))) {
            sink.error(
                table.keyPath("directory"),
                "'\(directory)' must be an https:// URL (a test CA may use http:// with test_ca = true)")
        }
        if agreed != true {
            sink.error(
                table.path, "the CA's terms of service must be agreed to: agree_terms = true (read them first)")
        }
        if let email, !email.contains("@") || email.contains(" ") {
            sink.error(table.keyPath("email"), "'\(email)' is not an e-mail address")
        }
        if let names {
            for name in names where !Self.isCertificateName(name) {
                sink.error(
                    table.keyPath("names"),
                    "'\(name)' cannot be validated by http-01 or tls-alpn-01 (a DNS name, no wildcard, no address)")
            }
            settings.names = names.map { $0.lowercased() }
        }
        if let challenges {
            var parsed: [ACMESettings.Challenge] = []
            for text in challenges {
                if let challenge = ACMESettings.Challenge(rawValue: text) {
                    if !parsed.contains(challenge) { parsed.append(challenge) }
                } else {
                    sink.error(table.keyPath("challenges"), "'\(text)' is not supported (\"tls-alpn-01\", \"http-01\")")
                }
            }
            if challenges.isEmpty { sink.error(table.keyPath("challenges"), "needs at least one challenge type") }
            if !parsed.isEmpty { settings.challenges = parsed }
        }
        if let directoryCA {
            checkReadable(directoryCA, at: table.keyPath("directory_ca"), generated: false)
            settings.directoryCA = directoryCA
        }
        if let retry { settings.retry = retry }
        switch (eabKeyID, eabMACKey) {
        case (nil, nil): break
        case (let keyID?, let text?):
            if let key = Self.base64URLDecode(text), !key.isEmpty, !keyID.isEmpty {
                settings.externalAccount = .init(keyID: keyID, macKey: key)
            } else {
                sink.error(table.keyPath("eab_hmac_key"), "not a base64url key (as the CA gave it)")
            }
        default:
            sink.error(
                table.keyPath(eabKeyID == nil ? "eab_hmac_key" : "eab_kid"),
                "eab_kid and eab_hmac_key go together: \(eabKeyID == nil ? "eab_kid" : "eab_hmac_key") is missing")
        }
        return settings
    }

    static func base64URLDecode(_ text: String) -> [UInt8]? {
        var base64 = text.replacing("-", with: "+").replacing("_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map(Array.init)
    }

    /// A name http-01 and tls-alpn-01 can prove: letters, digits, hyphens, at least one dot.
    static func isCertificateName(_ name: String) -> Bool {
        let labels = name.lowercased().split(separator: ".", omittingEmptySubsequences: false)
        return labels.count >= 2 && name.count <= 253
            && labels.allSatisfy { label in
                !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
            } && !(labels.last?.allSatisfy(\.isNumber) ?? true)
    }

    /// ACME certificates without files get paths under state_dir; without `names`, the routes'
    /// exact host names (wildcards cannot be validated over HTTP or TLS-ALPN).
    func resolveACME(_ configuration: inout FerryConfiguration) {
        let routeNames = configuration.routes.flatMap(\.hosts).filter(Self.isCertificateName).map { $0.lowercased() }
        for index in configuration.listeners.indices {
            guard var tls = configuration.listeners[index].tls, var acme = tls.acme, !tls.certificates.isEmpty else {
                continue
            }
            let defaults = ACMESettings.defaultPaths(
                stateDirectory: configuration.master.stateDirectory, listener: configuration.listeners[index].name)
            if tls.certificates[0].certificatePath.isEmpty {
                tls.certificates[0].certificatePath = defaults.certificate
            }
            if tls.certificates[0].keyPath.isEmpty { tls.certificates[0].keyPath = defaults.key }
            if acme.names.isEmpty {
                var seen = Set<String>()
                acme.names = routeNames.filter { seen.insert($0).inserted }
                if acme.names.isEmpty {
                    sink.error(
                        "listen[\(index + 1)].tls.acme.names",
                        "no names: list them, or give routes `hosts` with exact names")
                }
            }
            tls.acme = acme
            configuration.listeners[index].tls = tls
        }
    }
}
