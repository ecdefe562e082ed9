import Foundation
import Testing

/// End-to-end tests spawn the real `ferry` binary built next to the test bundle.
@Suite struct EndToEndSmokeTests {
    @Test func ferryHelpListsSubcommands() throws {
        let output = try FerryBinary.run(["--help"])
        #expect(output.status == 0)
        #expect(output.stdout.contains("check"))
        #expect(output.stdout.contains("serve"))
    }

    /// `ferry --version` prints Ferry's version and the OpenSSL it runs with: the same library
    /// text the `openssl` tool of this machine reports (issue 21, item 4).
    @Test func versionNamesFerryAndTheOpenSSLItRunsWith() throws {
        let output = try FerryBinary.run(["--version"])
        #expect(output.status == 0, "\(output.stderr)")
        let lines = output.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.wholeMatch(of: /ferry \d+\.\d+\.\d+/) != nil, "\(output.stdout)")
        #expect(lines.dropFirst().first?.hasPrefix("OpenSSL 3.") == true, "\(output.stdout)")
        guard let openssl = Tool.path("openssl") else { throw E2EError("openssl is not installed") }
        // "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)"
        let reported = try Tool.run(openssl, ["version"]).stdout
        guard let library = reported.firstMatch(of: /Library: ([^)]+)\)/)?.1 else {
            Issue.record("unexpected `openssl version`: \(reported)")
            return
        }
        #expect(lines.dropFirst().first?.hasPrefix(String(library)) == true, "\(output.stdout) vs \(reported)")
    }

    /// `make run` installs the demo's speech engine (issue 21, item 4: only `make test` did, so the
    /// demo spoke in tones). Dry run of the install script on a PATH where nothing is found.
    @Test func makeRunInstallsTheSpeechEngine() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../scripts/install-deps.sh"
        ).standardized.path
        func wouldInstall(_ mode: String) throws -> [String] {
            let result = try Tool.run(
                "/usr/bin/env", ["-i", "PATH=/nonexistent", "FERRY_DEPS_DRY_RUN=1", "/bin/bash", script, mode])
            #expect(result.stdout.hasPrefix("would install:"), "\(result.stdout)")
            return result.stdout.split(whereSeparator: \.isWhitespace).map(String.init)
        }
        #expect(try wouldInstall("run").contains("espeak-ng"))
        #expect(try !wouldInstall("build").contains("espeak-ng"))
        #expect(try wouldInstall("test").contains("espeak-ng"))
    }
}
