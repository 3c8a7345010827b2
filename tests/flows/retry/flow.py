"""A step that registers, then fails on its first attempt; @retry runs it again.

Its project comes from @project (there is no obproject.toml above this file)."""

from metaflow import current, project, retry, step

from assetd.metaflow import ProjectFlow


@project(name="mfretry")
class RetryFlow(ProjectFlow):
    @retry(times=1, minutes_between_retries=0)
    @step
    def start(self):
        self.table = [current.retry_count, 2, 3]
        self.outcome = self.prj.register_data("retry_table", "table", tags={"attempt": 0})
        print(f"attempt {current.retry_count} got {self.outcome['instance']}", flush=True)
        if current.retry_count == 0:
            raise RuntimeError("fails after registering")
        self.next(self.end)

    @step
    def end(self):
        print(f"read back {self.prj.get_data('retry_table')}", flush=True)


if __name__ == "__main__":
    RetryFlow()
