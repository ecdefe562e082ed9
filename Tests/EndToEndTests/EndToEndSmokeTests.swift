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
}
