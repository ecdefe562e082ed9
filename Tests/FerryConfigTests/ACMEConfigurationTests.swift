import Foundation
import Testing

@testable import FerryConfig

/// `[listen.tls.acme]`: what an operator writes, what it becomes, and each refusal with file:line.
@Suite struct ACMEConfigurationTests {
    static func config(_ acme: String, listenerPort: Int = 443, extra: String = "") -> String {
        """
        [master]
        state_dir = "/var/lib/ferry"

        [[listen]]
        name = "https"
        address = "0.0.0.0:\(listenerPort)"
        [listen.tls.acme]
        \(acme)

        [[backend]]
        name = "app"
        address = "127.0.0.1:8001"

        [[route]]
        path = "/"
        hosts = ["example.org", "www.example.org", "*.example.org"]
        backend = "app"
        \(extra)
        """
    }

    static let minimal = """
        directory = "https://acme.test/directory"
        agree_terms = true
        """

    @Test func namesComeFromTheRoutesAndFilesFromTheStateDirectory() throws {
        let loaded = try load(Self.config(Self.minimal))
        let tls = try #require(loaded.configuration.listeners[0].tls)
        let acme = try #require(tls.acme)
        // The wildcard cannot be validated over HTTP or TLS-ALPN: left out.
        #expect(acme.names == ["example.org", "www.example.org"])
        #expect(acme.challenges == [.tlsALPN01, .http01])
        #expect(acme.retry == .seconds(60))
        #expect(tls.selfSigned)  // the stand-in until the first certificate
        #expect(tls.certificates[0].certificatePath == "/var/lib/ferry/acme/certificates/https/fullchain.pem")
        #expect(tls.certificates[0].keyPath == "/var/lib/ferry/acme/certificates/https/key.pem")
        #expect(loaded.configuration.acmeChallengeDirectory == "/var/lib/ferry/acme/challenges")
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
    }

    @Test func everythingCanBeSaid() throws {
        let loaded = try load(
            Self.config(
                """
                directory = "http://127.0.0.1:14000/dir"
                test_ca = true
                directory_ca = "/etc/ferry/pebble.pem"
                email = "ops@example.org"
                agree_terms = true
                names = ["Example.ORG"]
                challenges = ["http-01"]
                retry = "5s"
                """))
        let acme = try #require(loaded.configuration.listeners[0].tls?.acme)
        #expect(acme.names == ["example.org"] && acme.challenges == [.http01] && acme.retry == .seconds(5))
        #expect(acme.email == "ops@example.org" && acme.directoryCA == "/etc/ferry/pebble.pem" && acme.testCA)
        // http-01 only, and no plain listener on port 80: nothing can answer a public CA.
        #expect(loaded.warnings.contains { $0.keyPath == "listen[1].tls.acme" && $0.message.contains("port 80") })
    }

    @Test func refusalsNameTheLineAndTheReason() {
        let cases: [(String, String, String)] = [
            (#"directory = "http://acme.test/dir"\#nagree_terms = true"#, "listen[1].tls.acme.directory", "https://"),
            (#"directory = "https://acme.test/dir""#, "listen[1].tls.acme", "agree_terms = true"),
            (Self.minimal + "\nnames = [\"*.example.org\"]", "listen[1].tls.acme.names", "cannot be validated"),
            (Self.minimal + "\nnames = [\"192.0.2.1\"]", "listen[1].tls.acme.names", "cannot be validated"),
            (Self.minimal + "\nchallenges = [\"dns-01\"]", "listen[1].tls.acme.challenges", "not supported"),
            (Self.minimal + "\nchallenges = []", "listen[1].tls.acme.challenges", "at least one"),
            (Self.minimal + "\nemail = \"not an address\"", "listen[1].tls.acme.email", "not an e-mail"),
            (Self.minimal + "\nretry = \"10ms\"", "listen[1].tls.acme.retry", "too short"),
            (#"agree_terms = true"#, "listen[1].tls.acme", "directory"),
        ]
        for (acme, keyPath, reason) in cases {
            let found = errors(Self.config(acme))
            #expect(
                found.contains { $0.keyPath == keyPath && $0.message.contains(reason) && $0.line > 1 },
                "\(acme): \(found)")
        }
        // Without names and without route hosts there is nothing to order.
        let noNames = errors(
            Self.config(Self.minimal).replacing(
                #"hosts = ["example.org", "www.example.org", "*.example.org"]"#, with: ""))
        #expect(
            noNames.contains { $0.keyPath == "listen[1].tls.acme.names" && $0.message.contains("no names") },
            "\(noNames)")
        // self_signed is implied; saying it is a mistake.
        let both = errors(
            Self.config(Self.minimal).replacing(
                "[listen.tls.acme]", with: "[listen.tls]\nself_signed = true\n[listen.tls.acme]"))
        #expect(both.contains { $0.keyPath == "listen[1].tls.self_signed" }, "\(both)")
    }

    @Test func externalAccountBindingTakesAKeyIDAndABase64URLKey() throws {
        let loaded = try load(Self.config(Self.minimal + "\neab_kid = \"kid-1\"\neab_hmac_key = \"AQID_-8\""))
        let eab = try #require(loaded.configuration.listeners[0].tls?.acme?.externalAccount)
        #expect(eab.keyID == "kid-1" && eab.macKey == [1, 2, 3, 0xFF, 0xEF])
        let alone = errors(Self.config(Self.minimal + "\neab_kid = \"kid-1\""))
        #expect(
            alone.contains {
                $0.keyPath == "listen[1].tls.acme.eab_kid" && $0.message.contains("eab_hmac_key is missing")
                    && $0.line > 1
            }, "\(alone)")
        let bad = errors(Self.config(Self.minimal + "\neab_kid = \"k\"\neab_hmac_key = \"not base64!\""))
        #expect(bad.contains { $0.keyPath == "listen[1].tls.acme.eab_hmac_key" && $0.message.contains("base64url") })
    }

    @Test func aListenerOn443WithTLSALPNIsNotWarnedAbout() throws {
        #expect(try load(Self.config(Self.minimal)).warnings.isEmpty)
        let elsewhere = try load(Self.config(Self.minimal, listenerPort: 8443))
        #expect(elsewhere.warnings.contains { $0.keyPath == "listen[1].tls.acme" }, "\(elsewhere.warnings)")
        let withPort80 = try load(
            Self.config(
                Self.minimal, listenerPort: 8443,
                extra: "\n[[listen]]\nname = \"http\"\naddress = \"0.0.0.0:80\"\nredirect_to_https = true\n"))
        #expect(!withPort80.warnings.contains { $0.keyPath == "listen[1].tls.acme" }, "\(withPort80.warnings)")
    }
}
