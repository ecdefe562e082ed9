import Testing

@testable import FerrySupervisor

@Suite struct FerrySupervisorModuleTests {
    @Test func moduleLinks() {
        #expect(!String(describing: FerrySupervisorModule.self).isEmpty)
    }
}
