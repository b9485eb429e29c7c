/* SPDX-License-Identifier: MIT */
/* Unit tests of the microvm API request parser and configuration model
 * (sandbox/microvm/api.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "sandbox/microvm/api.h"

static int parse(const char *method, const char *path, const char *body, struct vmapi_request *r,
		 char *err)
{
	return vmapi_parse(method, path, body, body ? strlen(body) : 0, r, err, 256);
}

static void test_routes(void **state)
{
	struct vmapi_request r;
	char err[256];

	assert_int_equal(parse("GET", "/", NULL, &r, err), 0);
	assert_int_equal(r.op, VMAPI_GET_INFO);
	assert_int_equal(parse("GET", "/metrics", NULL, &r, err), 0);
	assert_int_equal(r.op, VMAPI_GET_METRICS);
	assert_int_equal(parse("GET", "/machine-config", NULL, &r, err), 0);
	assert_int_equal(r.op, VMAPI_GET_MACHINE_CONFIG);
	assert_int_equal(parse("GET", "/vm/config", NULL, &r, err), 0);
	assert_int_equal(r.op, VMAPI_GET_VM_CONFIG);
	assert_int_equal(parse("PUT", "/actions", "{\"action_type\":\"InstanceStart\"}", &r, err),
			 0);
	assert_int_equal(r.op, VMAPI_INSTANCE_START);
	assert_int_equal(parse("PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", &r, err),
			 0);
	assert_int_equal(r.op, VMAPI_SEND_CTRL_ALT_DEL);
	assert_int_equal(parse("PATCH", "/vm", "{\"state\":\"Paused\"}", &r, err), 0);
	assert_int_equal(r.op, VMAPI_PAUSE);
	assert_int_equal(parse("PATCH", "/vm", "{\"state\":\"Resumed\"}", &r, err), 0);
	assert_int_equal(r.op, VMAPI_RESUME);

	assert_int_equal(parse("GET", "/nope", NULL, &r, err), -ENOENT);
	assert_non_null(strstr(err, "Invalid request method and/or path"));
	assert_int_equal(parse("DELETE", "/vm", NULL, &r, err), -ENOENT);
	assert_int_equal(parse("GET", "/vm", NULL, &r, err), -ENOENT);
	assert_int_equal(parse("PUT", "/drives/", "{}", &r, err), -ENOENT);
	assert_int_equal(parse("PUT", "/drives/a/b", "{}", &r, err), -ENOENT);
}

static void test_bad_bodies(void **state)
{
	struct vmapi_request r;
	char err[256];

	assert_int_equal(parse("PUT", "/machine-config", NULL, &r, err), -EINVAL);
	assert_int_equal(parse("PUT", "/machine-config", "{\"vcpu_count\":", &r, err), -EINVAL);
	assert_non_null(strstr(err, "malformed JSON"));
	assert_int_equal(parse("PUT", "/machine-config", "[1]", &r, err), -EINVAL);
	assert_int_equal(parse("PUT", "/machine-config",
			       "{\"vcpu_count\":1,\"mem_size_mib\":64,\"x\":1}", &r, err),
			 -EINVAL);
	assert_non_null(strstr(err, "unknown field 'x'"));
	assert_int_equal(parse("PUT", "/machine-config",
			       "{\"vcpu_count\":\"1\",\"mem_size_mib\":64}", &r, err),
			 -EINVAL);
	assert_non_null(strstr(err, "must be an integer"));
	assert_int_equal(parse("PUT", "/machine-config", "{\"vcpu_count\":1}", &r, err), -EINVAL);
	assert_non_null(strstr(err, "missing required field 'mem_size_mib'"));
	assert_int_equal(
		parse("PUT", "/machine-config", "{\"vcpu_count\":33,\"mem_size_mib\":64}", &r, err),
		-EINVAL);
	assert_int_equal(parse("PUT", "/machine-config",
			       "{\"vcpu_count\":1,\"mem_size_mib\":64,\"smt\":true}", &r, err),
			 -EINVAL);
	assert_int_equal(parse("PUT", "/machine-config",
			       "{\"vcpu_count\":1,\"vcpu_count\":2,\"mem_size_mib\":64}", &r, err),
			 -EINVAL); /* duplicate key */
	assert_int_equal(parse("PUT", "/boot-source", "{\"boot_args\":\"x\"}", &r, err), -EINVAL);
	assert_int_equal(parse("PUT", "/boot-source", "{\"kernel_image_path\":\"\"}", &r, err),
			 -EINVAL);
	assert_int_equal(parse("PUT", "/boot-source", "{\"kernel_image_path\":5}", &r, err),
			 -EINVAL);
	assert_int_equal(parse("PUT", "/actions", "{\"action_type\":\"Reboot\"}", &r, err),
			 -EINVAL);
	assert_int_equal(parse("PATCH", "/vm", "{\"state\":\"Stopped\"}", &r, err), -EINVAL);
	assert_int_equal(
		parse("PUT", "/drives/a",
		      "{\"drive_id\":\"b\",\"path_on_host\":\"/x\",\"is_root_device\":true}", &r,
		      err),
		-EINVAL);
	assert_non_null(strstr(err, "does not match"));
	assert_int_equal(
		parse("PUT", "/drives/a-b",
		      "{\"drive_id\":\"a-b\",\"path_on_host\":\"/x\",\"is_root_device\":true}", &r,
		      err),
		-EINVAL);
	assert_int_equal(
		parse("PUT", "/network-interfaces/e",
		      "{\"iface_id\":\"e\",\"host_dev_name\":\"tap0\",\"guest_mac\":\"zz\"}", &r,
		      err),
		-EINVAL);
	assert_int_equal(parse("PUT", "/network-interfaces/e",
			       "{\"iface_id\":\"e\",\"host_dev_name\":\"tap0\","
			       "\"guest_mac\":\"01:00:00:00:00:01\"}",
			       &r, err),
			 -EINVAL); /* multicast */
}

static void test_apply(void **state)
{
	struct vm_config cfg;
	struct vmapi_request r;
	char err[256];

	vm_config_init(&cfg);
	assert_int_equal(parse("PUT", "/boot-source",
			       "{\"kernel_image_path\":\"/k\",\"boot_args\":\"a=1\"}", &r, err),
			 0);
	assert_int_equal(vmapi_apply(&cfg, &r, err, sizeof(err)), 0);
	vmapi_request_done(&r);
	assert_string_equal(cfg.kernel_path, "/k");
	assert_string_equal(cfg.boot_args, "a=1");
	assert_null(cfg.initrd_path);

	assert_int_equal(
		parse("PUT", "/drives/root",
		      "{\"drive_id\":\"root\",\"path_on_host\":\"/r\",\"is_root_device\":true}", &r,
		      err),
		0);
	assert_int_equal(vmapi_apply(&cfg, &r, err, sizeof(err)), 0);
	vmapi_request_done(&r);
	/* Replacing the same id keeps one drive. */
	assert_int_equal(
		parse("PUT", "/drives/root",
		      "{\"drive_id\":\"root\",\"path_on_host\":\"/r2\",\"is_root_device\":true,"
		      "\"is_read_only\":true}",
		      &r, err),
		0);
	assert_int_equal(vmapi_apply(&cfg, &r, err, sizeof(err)), 0);
	vmapi_request_done(&r);
	assert_int_equal(cfg.n_drives, 1);
	assert_string_equal(cfg.drives[0].path, "/r2");
	assert_true(cfg.drives[0].read_only);
	/* A second root drive is refused. */
	assert_int_equal(
		parse("PUT", "/drives/other",
		      "{\"drive_id\":\"other\",\"path_on_host\":\"/o\",\"is_root_device\":true}",
		      &r, err),
		0);
	assert_int_equal(vmapi_apply(&cfg, &r, err, sizeof(err)), -EINVAL);
	vmapi_request_done(&r);

	assert_int_equal(parse("PUT", "/network-interfaces/eth0",
			       "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\","
			       "\"guest_mac\":\"06:00:ac:10:00:02\"}",
			       &r, err),
			 0);
	assert_int_equal(vmapi_apply(&cfg, &r, err, sizeof(err)), 0);
	vmapi_request_done(&r);
	assert_int_equal(cfg.n_nets, 1);
	assert_true(cfg.nets[0].has_mac);
	assert_int_equal(cfg.nets[0].mac[5], 2);

	assert_int_equal(
		parse("PUT", "/machine-config", "{\"vcpu_count\":2,\"mem_size_mib\":256}", &r, err),
		0);
	assert_int_equal(vmapi_apply(&cfg, &r, err, sizeof(err)), 0);
	json_t *mc = vmapi_machine_config_json(&cfg);
	assert_int_equal(json_integer_value(json_object_get(mc, "vcpu_count")), 2);
	assert_int_equal(json_integer_value(json_object_get(mc, "mem_size_mib")), 256);
	json_decref(mc);

	assert_int_equal(parse("GET", "/", NULL, &r, err), 0);
	assert_int_equal(vmapi_apply(&cfg, &r, err, sizeof(err)), -EINVAL);
	vm_config_done(&cfg);
}

static void test_config_file(void **state)
{
	struct vm_config cfg;
	char err[256];
	const char *good =
		"{\"boot-source\":{\"kernel_image_path\":\"/k\",\"initrd_path\":\"/i\"},"
		"\"machine-config\":{\"vcpu_count\":3,\"mem_size_mib\":64},"
		"\"drives\":[{\"drive_id\":\"d\",\"path_on_host\":\"/d\",\"is_root_device\":false}],"
		"\"network-interfaces\":[{\"iface_id\":\"n\",\"host_dev_name\":\"tap9\"}]}";

	vm_config_init(&cfg);
	assert_int_equal(vmapi_config_parse(good, strlen(good), &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.kernel_path, "/k");
	assert_string_equal(cfg.initrd_path, "/i");
	assert_int_equal(cfg.vcpu_count, 3);
	assert_int_equal(cfg.n_drives, 1);
	assert_int_equal(cfg.n_nets, 1);

	/* GET /vm/config's JSON reads back as the same configuration. */
	json_t *j = vmapi_config_json(&cfg);
	assert_non_null(j);
	char *text = json_dumps(j, 0);
	assert_non_null(text);
	json_decref(j);
	struct vm_config back;
	vm_config_init(&back);
	assert_int_equal(vmapi_config_parse(text, strlen(text), &back, err, sizeof(err)), 0);
	free(text);
	assert_string_equal(back.kernel_path, "/k");
	assert_null(back.boot_args);
	assert_int_equal(back.vcpu_count, 3);
	assert_int_equal(back.mem_mib, 64);
	assert_string_equal(back.drives[0].path, "/d");
	assert_string_equal(back.nets[0].host_dev, "tap9");
	vm_config_done(&back);
	vm_config_done(&cfg);

	const char *bad[] = {
		"{}",
		"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"logger\":{}}",
		"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"drives\":{}}",
		"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"machine-config\":{\"vcpu_count\":0,"
		"\"mem_size_mib\":64}}",
		"not json",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vm_config_init(&cfg);
		assert_int_equal(vmapi_config_parse(bad[i], strlen(bad[i]), &cfg, err, sizeof(err)),
				 -EINVAL);
		assert_true(err[0] != '\0');
		vm_config_done(&cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_bad_bodies),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_config_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
